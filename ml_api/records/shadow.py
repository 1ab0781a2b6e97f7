"""Shadow predictions in SQL: each compared pair, and per-variant counters of agreement and
latency."""
from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from ml_api.records.engine import retrying, translated, utcnow
from ml_api.records.schema import ShadowCounter, ShadowPrediction


class ShadowStore:
    """The shadow strategy's records: both models' predictions on the same request."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @retrying()
    def record(self, experiment_id: int, row: dict) -> None:
        agree = row["primary_prediction"] == row["shadow_prediction"]
        key = (ShadowCounter.experiment_id == experiment_id,
               ShadowCounter.variant == row["shadow_variant"])
        with translated("recording a shadow prediction"), self.engine.begin() as conn:
            conn.execute(insert(ShadowPrediction.__table__).values(
                experiment_id=experiment_id, created_at=utcnow(), **row))
            updated = conn.execute(update(ShadowCounter.__table__).where(*key).values(
                comparisons=ShadowCounter.comparisons + 1,
                agreements=ShadowCounter.agreements + int(agree),
                primary_ms_sum=ShadowCounter.primary_ms_sum + row["primary_ms"],
                shadow_ms_sum=ShadowCounter.shadow_ms_sum + row["shadow_ms"])).rowcount
            if updated == 0:
                conn.execute(insert(ShadowCounter.__table__).values(
                    experiment_id=experiment_id, variant=row["shadow_variant"], comparisons=1,
                    agreements=int(agree), primary_ms_sum=row["primary_ms"],
                    shadow_ms_sum=row["shadow_ms"]))

    def summary(self, experiment_id: int) -> dict[str, dict]:
        with translated("reading shadow counters"), self.engine.connect() as conn:
            rows = conn.execute(select(ShadowCounter.__table__).where(
                ShadowCounter.experiment_id == experiment_id)).mappings().all()
        return {r["variant"]: dict(r) for r in rows}

    def rows(self, experiment_id: int) -> list[dict]:
        with translated("reading shadow predictions"), self.engine.connect() as conn:
            rows = conn.execute(select(ShadowPrediction.__table__).where(
                ShadowPrediction.experiment_id == experiment_id)).mappings().all()
        return [dict(r) for r in rows]
