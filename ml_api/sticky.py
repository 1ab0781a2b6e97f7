"""Sticky assignment: the first group a uid gets in an experiment is its group for good.

Read path (a returning uid): one cache GET. Miss path: hash the uid with the current
weights, claim that group in the cache with SET NX, and record the exposure in the database,
whose unique key (experiment, uid) has the final word. So a weight change only moves new
uids, and a flushed cache or a restart moves nobody.
"""
from __future__ import annotations

import logging

from .assignment import choose_variant, bucket
from .cache import AssignmentCache
from .errors import CacheUnavailable, StorageUnavailable
from .experiments import Experiment
from .storage import SqlStore

log = logging.getLogger(__name__)


class StickyAssigner:
    def __init__(self, cache: AssignmentCache, store: SqlStore):
        self._cache = cache
        self._store = store

    def assign(self, experiment: Experiment, uid: str) -> str:
        """The variant name of this uid in this (running) experiment."""
        try:
            cached = self._cache.get(experiment.id, uid)
        except CacheUnavailable as exc:
            log.warning("assignment cache unavailable, using the database: %s", exc)
            cached = None
        if cached is not None and experiment.variant(cached) is not None:
            return cached
        return self._assign_on_miss(experiment, uid)

    def _assign_on_miss(self, experiment: Experiment, uid: str) -> str:
        candidate = experiment.variants[choose_variant(bucket(experiment.salt, uid),
                                                       experiment.bounds)].name
        try:
            claimed = self._cache.claim(experiment.id, uid, candidate)
        except CacheUnavailable:
            claimed = candidate
        try:
            durable = self._store.record_exposure(experiment.id, uid, claimed)
        except StorageUnavailable as exc:
            log.error("exposure of uid in %s not recorded: %s", experiment.name, exc)
            return claimed
        if durable != claimed:
            # The database knew this uid already (the cache was flushed, or another replica
            # used another cache): its answer wins, and the cache is corrected.
            try:
                self._cache.put(experiment.id, uid, durable)
            except CacheUnavailable:
                pass
        return durable
