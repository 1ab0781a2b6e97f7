"""Per-variant traffic in SQL (requests, errors, a latency histogram per minute window),
written by every worker and read merged by the canary guard and the dashboard."""
from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from ml_api.records.engine import retrying, translated
from ml_api.records.schema import VariantTraffic


class TrafficStore:
    """Minute windows of requests, errors and latency buckets per variant."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @retrying()
    def add_window(self, experiment_id: int, variant: str, window_start, requests: int,
                   errors: int, buckets: dict[str, int]) -> None:
        key = (VariantTraffic.experiment_id == experiment_id, VariantTraffic.variant == variant,
               VariantTraffic.window_start == window_start)
        with translated("recording variant traffic"), self.engine.begin() as conn:
            row = conn.execute(select(VariantTraffic.requests, VariantTraffic.errors,
                                      VariantTraffic.latency_buckets)
                               .where(*key).with_for_update()).first()
            if row is None:
                conn.execute(insert(VariantTraffic.__table__).values(
                    experiment_id=experiment_id, variant=variant, window_start=window_start,
                    requests=requests, errors=errors, latency_buckets=buckets))
                return
            merged = dict(row.latency_buckets)
            for bound, count in buckets.items():
                merged[bound] = merged.get(bound, 0) + count
            conn.execute(update(VariantTraffic.__table__).where(*key).values(
                requests=row.requests + requests, errors=row.errors + errors,
                latency_buckets=merged))

    def since(self, experiment_id: int, since) -> dict[str, dict]:
        """Requests, errors and merged latency buckets per variant since a time."""
        with translated("reading variant traffic"), self.engine.connect() as conn:
            rows = conn.execute(select(VariantTraffic.__table__).where(
                VariantTraffic.experiment_id == experiment_id,
                VariantTraffic.window_start >= since)).mappings().all()
        traffic: dict[str, dict] = {}
        for r in rows:
            entry = traffic.setdefault(r["variant"], {"requests": 0, "errors": 0, "buckets": {}})
            entry["requests"] += r["requests"]
            entry["errors"] += r["errors"]
            for bound, count in r["latency_buckets"].items():
                entry["buckets"][bound] = entry["buckets"].get(bound, 0) + count
        return traffic
