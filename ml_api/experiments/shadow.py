"""Shadow predictions: the shadow variants' models predict on the same features off the
request path, and both predictions are recorded for comparison."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ml_api.domain.experiments import Experiment
from ml_api.domain.models import Models
from ml_api.errors import BackendUnavailable
from ml_api.records.shadow import ShadowStore

log = logging.getLogger(__name__)


class ShadowRunner:
    """One background thread per process; a bounded queue that drops (and counts) work rather
    than let a slow shadow model or database grow memory or slow the primary answer."""

    def __init__(self, registry: Models, store: ShadowStore, max_pending: int = 1000):
        self._registry = registry
        self._store = store
        self._slots = threading.BoundedSemaphore(max_pending)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self.dropped = 0

    def submit(self, experiment: Experiment, uid: str, request_id: str, row: list[float],
               primary: dict) -> None:
        if not self._slots.acquire(blocking=False):
            self.dropped += 1
            return
        future = self._executor.submit(self._run, experiment, uid, request_id, row, primary)
        future.add_done_callback(lambda _: self._slots.release())

    def _run(self, experiment: Experiment, uid: str, request_id: str, row: list[float],
             primary: dict) -> None:
        for shadow in experiment.variants[1:]:
            model = self._registry.get(shadow.model_key)
            started = time.perf_counter()
            prediction, score = model.predict(row)
            shadow_ms = (time.perf_counter() - started) * 1000
            try:
                self._store.record(experiment.id, {
                    "request_id": request_id, "uid": uid, **primary,
                    "shadow_variant": shadow.name, "shadow_prediction": prediction,
                    "shadow_score": score, "shadow_ms": shadow_ms})
            except BackendUnavailable as exc:
                self.dropped += 1
                log.warning("shadow prediction not recorded: %s", exc)

    def drain(self, timeout: float = 30) -> None:
        """Wait for the work queued so far (tests, shutdown)."""
        self._executor.submit(lambda: None).result(timeout=timeout)
