"""Records the spool could not deliver within its horizon, kept in the database instead of
being dropped, for `reconcile` to report."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from ml_api.records.engine import translated, utcnow
from ml_api.records.schema import DeadLetter


class DeadLetters:
    """The dead_letters table."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def add(self, kind: str, payload: dict, reason: str, spooled_at: float) -> None:
        with translated("keeping a dead letter"), self.engine.begin() as conn:
            conn.execute(insert(DeadLetter.__table__).values(
                experiment_id=payload["experiment_id"], uid=payload["uid"], kind=kind,
                payload=payload, reason=reason[:255], moved_at=utcnow(),
                spooled_at=datetime.fromtimestamp(spooled_at, timezone.utc).replace(tzinfo=None)))

    def of_experiment(self, experiment_id: int) -> list[dict]:
        with translated("reading dead letters"), self.engine.connect() as conn:
            rows = conn.execute(select(DeadLetter.__table__).where(
                DeadLetter.experiment_id == experiment_id).order_by(DeadLetter.id))
            return [{"kind": r.kind, "uid": r.uid, "payload": r.payload, "reason": r.reason,
                     "spooled_at": r.spooled_at.isoformat(), "moved_at": r.moved_at.isoformat()}
                    for r in rows]
