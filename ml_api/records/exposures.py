"""Exposures and outcomes in SQL, and the counters that keep results O(1) to read.

Each record and its counter increments are written in one transaction, so the counters
always equal what the raw rows add up to (`reconcile` recomputes them to prove it).
Counters are sharded by uid (16 rows per variant) so concurrent writers rarely wait on
the same row lock.

The statements written on every new uid and every outcome are built once, with bound
parameters, and executed with a dict of values: building a statement such as the counter
update below from its columns and operators costs more CPU than executing it.
"""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

from sqlalchemy import Float, bindparam, case, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ml_api.errors import StorageUnavailable, UnknownAssignment
from ml_api.records.engine import SHARDS, retrying, translated, utcnow
from ml_api.records.schema import (
    Exposure,
    Outcome,
    UserMetric,
    VariantCounter,
    VariantMetric,
)
from ml_api.stats.results import MetricSums


def shard_of(uid: str) -> int:
    return zlib.crc32(uid.encode("utf-8")) % SHARDS


@dataclass(frozen=True)
class OutcomeReceipt:
    """What became of an outcome: the group it was attributed to, and whether it was a
    duplicate or is waiting in the spool."""

    variant: str
    duplicate: bool
    queued: bool = False  # spooled locally while the database is down
    converting: int = 0  # the change in the uid's conversion: +1, 0, or -1 (a refund)


_exposures = Exposure.__table__
_counters = VariantCounter.__table__
_outcomes = Outcome.__table__
_user_metrics = UserMetric.__table__
_variant_metrics = VariantMetric.__table__

# Bound parameters are named p_*: SQLAlchemy keeps columns' own names for its SET and VALUES.
INSERT_EXPOSURE = insert(_exposures)
FIND_EXPOSURE = select(_exposures.c.variant).where(
    _exposures.c.experiment_id == bindparam("p_experiment"),
    _exposures.c.uid == bindparam("p_uid"))
INSERT_OUTCOME = insert(_outcomes)
INSERT_USER_METRIC = insert(_user_metrics)
INSERT_VARIANT_METRIC = insert(_variant_metrics)
_USER_METRIC_KEY = (_user_metrics.c.experiment_id == bindparam("p_experiment"),
                    _user_metrics.c.uid == bindparam("p_uid"),
                    _user_metrics.c.metric == bindparam("p_metric"))
LOCK_USER_METRIC = select(_user_metrics.c.total).where(*_USER_METRIC_KEY).with_for_update()
ADD_USER_METRIC = update(_user_metrics).where(*_USER_METRIC_KEY).values(
    total=_user_metrics.c.total + bindparam("p_value", type_=Float),
    events=_user_metrics.c.events + 1)
ADD_VARIANT_METRIC = update(_variant_metrics).where(
    _variant_metrics.c.experiment_id == bindparam("p_experiment"),
    _variant_metrics.c.variant == bindparam("p_variant"),
    _variant_metrics.c.metric == bindparam("p_metric"),
    _variant_metrics.c.shard == bindparam("p_shard"),
).values(users=_variant_metrics.c.users + bindparam("p_users"),
         events=_variant_metrics.c.events + bindparam("p_events"),
         total=_variant_metrics.c.total + bindparam("p_total", type_=Float),
         total_sq=_variant_metrics.c.total_sq + bindparam("p_total_sq", type_=Float))


@functools.lru_cache(maxsize=32)
def counter_update(variants: int):
    """The counter update of a new uid's shard in an experiment of this many variants: one
    more exposure for the uid's variant (p_variant), and each variant's share of new uids
    (p_name_i, p_share_i) added to its expected count, for the SRM check."""
    shares = [(_counters.c.variant == bindparam(f"p_name_{i}"),
               bindparam(f"p_share_{i}", type_=Float)) for i in range(variants)]
    return update(_counters).where(
        _counters.c.experiment_id == bindparam("p_experiment"),
        _counters.c.shard == bindparam("p_shard"),
    ).values(exposures=_counters.c.exposures
             + case((_counters.c.variant == bindparam("p_variant"), 1), else_=0),
             expected=_counters.c.expected + case(*shares, else_=0.0))


class ExposureStore:
    """Exposures (a uid's first group), outcomes attributed to them, and their counters."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @retrying()
    def record_exposure(self, experiment_id: int, uid: str, variant: str,
                        shares: dict[str, float] | None = None) -> tuple[str, bool]:
        """Record the first exposure; returns the variant held durably for this uid, and
        whether this call recorded it.

        The unique key (experiment_id, uid) makes the database the final arbiter: if another
        worker or replica recorded this uid first, its variant is returned instead. `shares`
        (each variant's share of new uids now) feeds the expected counts of the SRM check.
        """
        shares = shares or {variant: 1.0}
        counted = {"p_experiment": experiment_id, "p_shard": shard_of(uid), "p_variant": variant}
        for i, (name, share) in enumerate(shares.items()):
            counted[f"p_name_{i}"] = name
            counted[f"p_share_{i}"] = share
        try:
            with translated("recording an exposure"), self.engine.begin() as conn:
                conn.execute(INSERT_EXPOSURE, {"experiment_id": experiment_id, "uid": uid,
                                               "variant": variant, "first_seen": utcnow()})
                conn.execute(counter_update(len(shares)), counted)
            return variant, True
        except IntegrityError:
            existing = self.find_exposure(experiment_id, uid)
            if existing is None:
                raise StorageUnavailable("exposure insert conflicted but no row was found")
            return existing, False

    def find_exposure(self, experiment_id: int, uid: str) -> str | None:
        with translated("reading an exposure"), self.engine.connect() as conn:
            return conn.execute(FIND_EXPOSURE, {"p_experiment": experiment_id,
                                                "p_uid": uid}).scalar()

    def exposure_counts(self, experiment_id: int) -> dict[str, int]:
        """Exposures per variant counted from the raw rows (O(exposures); for checks)."""
        with translated("counting exposures"), self.engine.connect() as conn:
            rows = conn.execute(
                select(Exposure.variant, func.count()).where(
                    Exposure.experiment_id == experiment_id).group_by(Exposure.variant))
            return {variant: count for variant, count in rows}

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
        variant = conn.execute(FIND_EXPOSURE, {"p_experiment": experiment_id,
                                               "p_uid": uid}).scalar()
        if variant is None:
            raise UnknownAssignment(f"uid {uid!r} was never assigned in this experiment")
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
            users=converting, events=1, total=value, total_sq=new * new - previous * previous))
        return OutcomeReceipt(variant, duplicate=False, converting=converting)

    @staticmethod
    def _add_metric(conn: Connection, experiment_id: int, variant: str, metric: str,
                    shard: int, delta: MetricSums) -> None:
        updated = conn.execute(ADD_VARIANT_METRIC, {
            "p_experiment": experiment_id, "p_variant": variant, "p_metric": metric,
            "p_shard": shard, "p_users": delta.users, "p_events": delta.events,
            "p_total": delta.total, "p_total_sq": delta.total_sq}).rowcount
        if updated == 0:  # first outcome of this metric in this shard; a racing insert retries
            conn.execute(INSERT_VARIANT_METRIC, {
                "experiment_id": experiment_id, "variant": variant, "metric": metric,
                "shard": shard, "users": delta.users, "events": delta.events,
                "total": delta.total, "total_sq": delta.total_sq})

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
