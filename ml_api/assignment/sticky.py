"""Sticky assignment: the first group a uid gets in an experiment is its group for good.

Tiers, fastest first: this process's memory, then Redis (when configured), then the
database, whose unique key (experiment, uid) decides which group a new uid gets when
several workers or replicas race for it. Only final answers are cached, so a returning uid
costs at most one Redis round-trip (none once this process has seen it). A weight change
only moves new uids; a flushed cache or a restart moves nobody.

Where the hash alone gives every uid its first group, no arbitration is needed and that
group is final at once: Redis SET NX tells a new uid from a returning one, and the new
uid's exposure is written ahead (write_ahead.py), its Redis value marked provisional until
the database has it.

While the database is unreachable, Redis SET NX arbitrates instead, and the answer is
cached in Redis as *provisional* (never in memory) until the exposure is written. A uid that
Redis does not know may still be a returning one (Redis restarted, or a write to it failed):
when the hash could then give it another group than its first (weights changed since the
start, or an adaptive strategy), the uid is not assigned at all (AssignmentUnconfirmed) and
the caller serves it outside the experiment.
"""
from __future__ import annotations

import logging

from ml_api.assignment.caches import AssignmentCache, InProcessAssignmentCache
from ml_api.assignment.hashing import bucket, cached_bounds, choose_variant
from ml_api.assignment.write_ahead import WriteAhead
from ml_api.domain.experiments import Experiment
from ml_api.errors import AssignmentUnconfirmed, CacheUnavailable, StorageUnavailable
from ml_api.records.exposures import ExposureStore
from ml_api.records.spool import Spool
from ml_api.telemetry import prometheus

log = logging.getLogger(__name__)

PROVISIONAL = "*"  # suffix of a Redis value not yet confirmed by the database
_MEMORY_HIT, _MEMORY_MISS, _REDIS_HIT, _REDIS_MISS = (
    prometheus.DeferredCounter(prometheus.ASSIGNMENT_CACHE.labels(tier, result))
    for tier, result in [("memory", "hit"), ("memory", "miss"), ("redis", "hit"),
                         ("redis", "miss")])


def _hashed_group(experiment: Experiment, uid: str) -> str:
    """The group the hash gives this uid under the experiment's current weights."""
    return experiment.variants[choose_variant(bucket(experiment.salt, uid),
                                              cached_bounds(experiment.weights))].name


class StickyAssigner:
    """A uid's group in an experiment: the first one it was given, from the fastest tier
    that knows it, or a new one recorded durably before it is answered."""

    def __init__(self, local: InProcessAssignmentCache, shared: AssignmentCache | None,
                 store: ExposureStore, spool: Spool | None = None,
                 write_ahead: WriteAhead | None = None):
        self._local = local
        self._shared = shared
        self._store = store
        self._spool = spool
        self._write_ahead = write_ahead if shared is not None else None

    def assign(self, experiment: Experiment, uid: str,
               covariate: float | None = None) -> tuple[str, bool]:
        """The variant name of this uid in this (running) experiment, and whether this call
        gave the uid its first group (its first exposure, recorded with `covariate`)."""
        known = self._local.get(experiment.id, uid)
        if known is not None:
            _MEMORY_HIT.inc()
            return known, False
        _MEMORY_MISS.inc()
        if self._write_ahead is not None and experiment.hash_gives_first_groups:
            return self._assign_ahead(experiment, uid, covariate)
        shared = self._shared_get(experiment, uid)
        if self._shared is not None:
            (_REDIS_HIT if shared is not None else _REDIS_MISS).inc()
        if shared is not None:
            if not shared.endswith(PROVISIONAL):
                self._local.put(experiment.id, uid, shared)
                return shared, False
            provisional = shared[:-1]
        else:
            provisional = None
        return self._assign_on_miss(experiment, uid, provisional, covariate)

    def _assign_ahead(self, experiment: Experiment, uid: str,
                      covariate: float | None) -> tuple[str, bool]:
        """A uid's group when the hash gives every uid its first group: Redis SET NX tells a
        new uid (its exposure is written ahead) from a returning one, in one round trip."""
        candidate = _hashed_group(experiment, uid)
        try:
            held, new = self._shared.claim(experiment.id, uid, candidate + PROVISIONAL)
        except CacheUnavailable as exc:
            log.warning("assignment cache unavailable, asking the database: %s", exc)
            return self._assign_on_miss(experiment, uid, None, covariate)
        (_REDIS_MISS if new else _REDIS_HIT).inc()
        if new:
            try:
                self._write_ahead.add(experiment, uid, candidate, covariate)
            except OSError as exc:
                log.warning("exposure not written ahead, written to the database: %s", exc)
                return self._assign_on_miss(experiment, uid, candidate, covariate)[0], True
            self._local.put(experiment.id, uid, candidate)
            return candidate, True
        group = held.removesuffix(PROVISIONAL)
        if experiment.variant(group) is None:  # a variant that no longer exists: decide again
            return self._assign_on_miss(experiment, uid, None, covariate)
        if group == held:
            self._local.put(experiment.id, uid, group)
            return group, False
        # Not in the database yet as far as Redis knows (its batch is still being written, or
        # its writer died): insert-or-get settles it.
        return self._assign_on_miss(experiment, uid, group, covariate)

    def known_group(self, experiment: Experiment, uid: str) -> str | None:
        """The uid's group if this process or Redis knows it (no database access)."""
        known = self._local.get(experiment.id, uid)
        if known is not None:
            return known
        shared = self._shared_get(experiment, uid)
        return None if shared is None else shared.removesuffix(PROVISIONAL)

    def _shared_get(self, experiment: Experiment, uid: str) -> str | None:
        if self._shared is None:
            return None
        try:
            value = self._shared.get(experiment.id, uid)
        except CacheUnavailable as exc:
            log.warning("assignment cache unavailable, asking the database: %s", exc)
            return None
        if value is not None and experiment.variant(value.removesuffix(PROVISIONAL)) is None:
            return None  # a variant that no longer exists: decide again
        return value

    def _assign_on_miss(self, experiment: Experiment, uid: str, provisional: str | None,
                        covariate: float | None) -> tuple[str, bool]:
        candidate = provisional or _hashed_group(experiment, uid)
        try:
            durable, first = self._store.record_exposure(experiment.id, uid, candidate,
                                                        experiment.shares, covariate)
        except StorageUnavailable as exc:
            if provisional is None and not experiment.hash_gives_first_groups:
                raise AssignmentUnconfirmed(
                    f"the group of {uid!r} in {experiment.name} cannot be confirmed") from exc
            log.warning("database unavailable, exposure in %s spooled: %s", experiment.name, exc)
            claimed = self._claim_provisionally(experiment, uid, candidate)
            if self._spool is not None:
                self._spool.add_exposure(experiment.id, uid, claimed, experiment.shares,
                                         covariate)
            return claimed, provisional is None and claimed == candidate
        self._local.put(experiment.id, uid, durable)
        if self._shared is not None:
            # The database-confirmed group is final: it may overwrite anything, a provisional
            # group included, and it may arrive a moment later (a worker that misses it
            # meanwhile asks the database, which answers the same).
            self._shared.put_later(experiment.id, uid, durable)
        # A provisional group's first exposure was marked when it was given, not now.
        return durable, first and provisional is None

    def _claim_provisionally(self, experiment: Experiment, uid: str, candidate: str) -> str:
        if self._shared is None:
            return candidate
        try:
            claimed, _ = self._shared.claim(experiment.id, uid, candidate + PROVISIONAL)
        except CacheUnavailable:
            return candidate
        return claimed.removesuffix(PROVISIONAL)
