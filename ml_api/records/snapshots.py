"""Each variant's counters once a minute, so the results can be recomputed as they stood
at any minute of the experiment (the effect over time). Written off the request path."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ml_api.records.engine import translated
from ml_api.records.history_schema import CounterSnapshot
from ml_api.stats.results import MetricSums

_TABLE = CounterSnapshot.__table__


class SnapshotStore:
    """Counter snapshots: one row per experiment, minute and variant."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def take(self, experiment_id: int, minute: datetime, exposures: dict[str, int],
             sums: dict[str, MetricSums]) -> bool:
        """Record the counters as of `minute`; False if a snapshot of that minute exists
        (another worker took it first)."""
        rows = [{"experiment_id": experiment_id, "taken_at": minute, "variant": variant,
                 "exposures": exposures.get(variant, 0), "users": s.users,
                 "events": s.events, "total": s.total, "total_sq": s.total_sq}
                for variant, s in ((v, sums.get(v, MetricSums()))
                                   for v in sorted(set(exposures) | set(sums)))]
        if not rows:
            return False
        try:
            with translated("taking a counter snapshot"), self.engine.begin() as conn:
                conn.execute(insert(_TABLE), rows)
        except IntegrityError:
            return False
        return True

    def series(self, experiment_id: int) -> list[tuple[datetime, dict[str, int],
                                                         dict[str, MetricSums]]]:
        """(minute, exposures per variant, sums per variant), oldest first."""
        with translated("reading counter snapshots"), self.engine.connect() as conn:
            rows = conn.execute(select(_TABLE).where(_TABLE.c.experiment_id == experiment_id)
                                .order_by(_TABLE.c.taken_at)).mappings().all()
        series: list[tuple[datetime, dict[str, int], dict[str, MetricSums]]] = []
        for row in rows:
            if not series or series[-1][0] != row["taken_at"]:
                series.append((row["taken_at"], {}, {}))
            series[-1][1][row["variant"]] = row["exposures"]
            series[-1][2][row["variant"]] = MetricSums(row["users"], row["events"],
                                                       row["total"], row["total_sq"])
        return series
