"""The looks the always-valid running values are taken over: each comparison's decisive test
at every supervisor snapshot, stored so every replica and a restart see the same running
minimum and intersection. Written off the request path."""
from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ml_api.records.engine import translated
from ml_api.records.history_schema import SequentialLook
from ml_api.stats.always_valid import Look

_TABLE = SequentialLook.__table__


def _stored(value: float) -> float | None:
    return value if math.isfinite(value) else None  # an unbounded end is stored as NULL


class LookStore:
    """Sequential looks: one row per experiment, look time and comparison."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record(self, experiment_id: int, at: datetime, looks: dict[str, Look]) -> bool:
        """Store each comparison's look at `at`; False if a look at that time exists
        (another worker took it first) or there is nothing to store."""
        rows = [{"experiment_id": experiment_id, "taken_at": at, "variant": variant,
                 "test": look.test, "estimate": look.estimate, "p_value": look.p_value,
                 "ci_low": _stored(look.low), "ci_high": _stored(look.high)}
                for variant, look in sorted(looks.items())]
        if not rows:
            return False
        try:
            with translated("recording a sequential look"), self.engine.begin() as conn:
                conn.execute(insert(_TABLE), rows)
        except IntegrityError:
            return False
        return True

    def looks(self, experiment_id: int) -> dict[str, list[Look]]:
        """Each comparison's looks, oldest first."""
        with translated("reading sequential looks"), self.engine.connect() as conn:
            rows = conn.execute(select(_TABLE).where(_TABLE.c.experiment_id == experiment_id)
                                .order_by(_TABLE.c.taken_at)).mappings().all()
        looks: dict[str, list[Look]] = {}
        for row in rows:
            looks.setdefault(row["variant"], []).append(Look(
                row["taken_at"], row["test"], row["estimate"], row["p_value"],
                -math.inf if row["ci_low"] is None else row["ci_low"],
                math.inf if row["ci_high"] is None else row["ci_high"]))
        return looks
