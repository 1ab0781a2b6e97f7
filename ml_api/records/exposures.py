"""Exposures and outcomes in SQL, and the counters that keep results O(1) to read.

Each record and its counter increments are written in one transaction, so the counters
always equal what the raw rows add up to (`reconcile` recomputes them to prove it).
Counters are sharded (16 rows per variant) so concurrent writers rarely wait on the same
row lock. New uids' exposures are written in batches (new_exposures.py).

The statements they run are built once, in statements.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ml_api.errors import StorageUnavailable, TransientConflict, UnknownAssignment
from ml_api.records.engine import retrying, translated, utcnow
from ml_api.records.new_exposures import NewExposure, held_groups, insert_exposures, shard_of
from ml_api.records.schema import Exposure, Outcome, VariantCounter, VariantMetric
from ml_api.records.statements import (
    ADD_USER_METRIC,
    ADD_VARIANT_METRIC,
    FIND_EXPOSURE,
    INSERT_OUTCOME,
    INSERT_USER_METRIC,
    INSERT_VARIANT_METRIC,
    LOCK_USER_METRIC,
)
from ml_api.records.covariates import covariate_sums
from ml_api.stats.cuped import CovariateSums
from ml_api.stats.results import MetricSums


@dataclass(frozen=True)
class OutcomeReceipt:
    """What became of an outcome: the group it was attributed to, and whether it was a
    duplicate or is waiting in the spool."""

    variant: str
    duplicate: bool
    queued: bool = False  # spooled locally while the database is down
    converting: int = 0  # the change in the uid's conversion: +1, 0, or -1 (a refund)
    exposed_at: datetime | None = None  # when the uid was first exposed (UTC, naive)


class ExposureStore:
    """Exposures (a uid's first group), outcomes attributed to them, and their counters."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record_exposure(self, experiment_id: int, uid: str, variant: str,
                        shares: dict[str, float] | None = None,
                        covariate: float | None = None,
                        claimed_at: float | None = None) -> tuple[str, bool]:
        """Record the first exposure; returns the variant held durably for this uid, and
        whether this call recorded it.

        The unique key (experiment_id, uid) makes the database the final arbiter: if another
        worker or replica recorded this uid first, its variant is returned instead. `shares`
        (each variant's share of new uids now) feeds the expected counts of the SRM check.
        `claimed_at` (time.time()) is the first_seen of an exposure recorded late; None: now.
        """
        first = NewExposure(experiment_id, uid, variant, shares or {variant: 1.0}, covariate,
                            claimed_at)
        return self.record_exposures([first])[(experiment_id, uid)]

    @retrying()
    def record_exposures(self, batch: list[NewExposure]) -> dict[tuple[int, str],
                                                                  tuple[str, bool]]:
        """record_exposure for a batch, in one transaction: for each (experiment_id, uid),
        the variant held durably and whether this call recorded it. A uid twice in the batch
        keeps its first entry."""
        firsts: dict[tuple[int, str], NewExposure] = {}
        for exposure in batch:
            firsts.setdefault((exposure.experiment_id, exposure.uid), exposure)
        with translated("recording exposures"):
            try:
                insert_exposures(self.engine, list(firsts.values()))
                return {key: (exposure.variant, True) for key, exposure in firsts.items()}
            except IntegrityError:  # some were recorded before: insert the others
                held = {key: (variant, False)
                        for key, variant in held_groups(self.engine, firsts).items()}
            rest = [exposure for key, exposure in firsts.items() if key not in held]
            try:
                insert_exposures(self.engine, rest)
                return {**held, **{(e.experiment_id, e.uid): (e.variant, True) for e in rest}}
            except IntegrityError:  # others are being recorded concurrently: one at a time
                return {**held, **{(e.experiment_id, e.uid): self._record_one(e)
                                   for e in rest}}

    def _record_one(self, exposure: NewExposure) -> tuple[str, bool]:
        for _ in range(3):
            try:
                insert_exposures(self.engine, [exposure])
                return exposure.variant, True
            except IntegrityError:
                existing = self.find_exposure(exposure.experiment_id, exposure.uid)
                if existing is not None:
                    return existing, False
        # Inserted and rolled back by another writer each time: try the whole call again.
        raise TransientConflict(f"the exposure of {exposure.uid!r} kept conflicting")

    def find_exposure(self, experiment_id: int, uid: str) -> str | None:
        with translated("reading an exposure"), self.engine.connect() as conn:
            return conn.execute(FIND_EXPOSURE, {"p_experiment": experiment_id,
                                                "p_uid": uid}).scalar()  # the variant

    def exposure_counts(self, experiment_id: int) -> dict[str, int]:
        """Exposures per variant counted from the raw rows (O(exposures); for checks)."""
        with translated("counting exposures"), self.engine.connect() as conn:
            rows = conn.execute(
                select(Exposure.variant, func.count()).where(
                    Exposure.experiment_id == experiment_id).group_by(Exposure.variant))
            return {variant: count for variant, count in rows}

    def covariate_sums(self, experiment_id: int, metric: str, sums: dict[str, MetricSums],
                       conversion: bool) -> dict[str, CovariateSums]:
        """Per variant, the sums CUPED needs (covariates.py)."""
        return covariate_sums(self.engine, experiment_id, metric, sums, conversion)

    def exposure_counters(self, experiment_id: int) -> tuple[dict[str, int], dict[str, float]]:
        """(exposures, expected exposures) per variant, from the counters (O(variants))."""
        with translated("reading counters"), self.engine.connect() as conn:
            rows = conn.execute(select(
                VariantCounter.variant, func.sum(VariantCounter.exposures),
                func.sum(VariantCounter.expected),
            ).where(VariantCounter.experiment_id == experiment_id)
                .group_by(VariantCounter.variant)).all()
        return ({v: int(n or 0) for v, n, _ in rows}, {v: float(e or 0) for v, _, e in rows})

    @retrying()
    def record_outcome(self, experiment_id: int, uid: str, metric: str, value: float,
                       event_id: str | None = None) -> OutcomeReceipt:
        """Attribute an outcome to the uid's variant; a repeated event_id counts once."""
        for attempt in range(3):
            try:
                with translated("recording an outcome"), self.engine.begin() as conn:
                    return self._record_outcome(conn, experiment_id, uid, metric, value,
                                                event_id)
            except IntegrityError as exc:
                message = str(exc.orig)
                if event_id is not None and ("uq_outcome_event" in message
                                             or "outcomes.event_id" in message):
                    variant = self.find_exposure(experiment_id, uid)
                    return OutcomeReceipt(variant or "", duplicate=True)
                if attempt == 2:  # a concurrent first outcome of this uid: retried twice
                    raise StorageUnavailable("outcome kept conflicting") from exc
        raise AssertionError("unreachable")

    def _record_outcome(self, conn: Connection, experiment_id: int, uid: str, metric: str,
                        value: float, event_id: str | None) -> OutcomeReceipt:
        exposure = conn.execute(FIND_EXPOSURE, {"p_experiment": experiment_id,
                                                "p_uid": uid}).first()
        if exposure is None:
            raise UnknownAssignment(f"uid {uid!r} was never assigned in this experiment")
        variant, covariate, exposed_at = exposure
        conn.execute(INSERT_OUTCOME, {
            "experiment_id": experiment_id, "uid": uid, "variant": variant, "metric": metric,
            "value": value, "event_id": event_id, "created_at": utcnow()})
        key = {"p_experiment": experiment_id, "p_uid": uid, "p_metric": metric}
        previous = conn.execute(LOCK_USER_METRIC, key).scalar()
        if previous is None:
            conn.execute(INSERT_USER_METRIC, {
                "experiment_id": experiment_id, "uid": uid, "metric": metric,
                "variant": variant, "total": value, "events": 1})
            previous = 0.0
        else:
            conn.execute(ADD_USER_METRIC, {**key, "p_value": value})
        new = previous + value
        converting = int(new > 0) - int(previous > 0)
        self._add_metric(conn, experiment_id, variant, metric, shard_of(uid), MetricSums(
            users=converting, events=1, total=value, total_sq=new * new - previous * previous),
            covariate=covariate, value=value, converting=converting)
        return OutcomeReceipt(variant, duplicate=False, converting=converting,
                              exposed_at=exposed_at)

    @staticmethod
    def _add_metric(conn: Connection, experiment_id: int, variant: str, metric: str,
                    shard: int, delta: MetricSums, covariate: float | None = None,
                    value: float = 0.0, converting: int = 0) -> None:
        """Add `delta` to the shard's counters, with what CUPED needs when the uid came with a
        covariate: x times the change of the uid's total and of its conversion, and those
        changes themselves."""
        covered = covariate is not None
        covariate = covariate or 0.0
        updated = conn.execute(ADD_VARIANT_METRIC, {
            "p_covered_total": value if covered else 0.0,
            "p_covered_converting": converting if covered else 0,
            "p_experiment": experiment_id, "p_variant": variant, "p_metric": metric,
            "p_shard": shard, "p_users": delta.users, "p_events": delta.events,
            "p_total": delta.total, "p_total_sq": delta.total_sq,
            "p_covariate_total": covariate * value,
            "p_covariate_converting": covariate * converting}).rowcount
        if updated == 0:  # first outcome of this metric in this shard; a racing insert retries
            conn.execute(INSERT_VARIANT_METRIC, {
                "experiment_id": experiment_id, "variant": variant, "metric": metric,
                "shard": shard, "users": delta.users, "events": delta.events,
                "total": delta.total, "total_sq": delta.total_sq,
                "covariate_total": covariate * value,
                "covariate_converting": covariate * converting,
                "covered_total": value if covered else 0.0,
                "covered_converting": converting if covered else 0})

    def metric_sums(self, experiment_id: int, metric: str) -> dict[str, MetricSums]:
        with translated("reading metric counters"), self.engine.connect() as conn:
            rows = conn.execute(select(
                VariantMetric.variant, func.sum(VariantMetric.users),
                func.sum(VariantMetric.events), func.sum(VariantMetric.total),
                func.sum(VariantMetric.total_sq),
            ).where(VariantMetric.experiment_id == experiment_id, VariantMetric.metric == metric)
                .group_by(VariantMetric.variant)).all()
        return {v: MetricSums(int(u or 0), int(e or 0), float(t or 0), float(q or 0))
                for v, u, e, t, q in rows}

    def outcome_count(self, experiment_id: int) -> int:
        with translated("counting outcomes"), self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Outcome.__table__).where(
                Outcome.experiment_id == experiment_id)).scalar()

    def recount(self, experiment_id: int, metric: str) -> tuple[dict[str, int],
                                                                 dict[str, MetricSums]]:
        """Exposures and metric sums recomputed from the raw rows (O(rows))."""
        exposures = self.exposure_counts(experiment_id)
        with translated("recounting outcomes"), self.engine.connect() as conn:
            per_user = select(Outcome.variant, Outcome.uid, func.sum(Outcome.value).label("t"),
                              func.count().label("n")).where(
                Outcome.experiment_id == experiment_id, Outcome.metric == metric,
            ).group_by(Outcome.variant, Outcome.uid).subquery()
            rows = conn.execute(select(
                per_user.c.variant, func.sum(case((per_user.c.t > 0, 1), else_=0)),
                func.sum(per_user.c.n), func.sum(per_user.c.t),
                func.sum(per_user.c.t * per_user.c.t),
            ).group_by(per_user.c.variant)).all()
        sums = {v: MetricSums(int(u or 0), int(e or 0), float(t or 0), float(q or 0))
                for v, u, e, t, q in rows}
        return exposures, sums
