"""Per-variant traffic (requests, errors, latency histogram) for canary guards and the
dashboard.

Each worker counts in memory and flushes to the database per minute window; the canary
supervisor reads the windows since its current step began, merged across workers. A request
only appends to a deque (atomic under the GIL: no lock for a worker's threads to contend
for); flush() counts what has accumulated.
"""
from __future__ import annotations

import collections
import threading
from bisect import bisect_left
from datetime import datetime

from ml_api.errors import BackendUnavailable
from ml_api.records.traffic import TrafficStore

LATENCY_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, float("inf"))


def bucket_label(latency_ms: float) -> str:
    bound = LATENCY_BOUNDS_MS[bisect_left(LATENCY_BOUNDS_MS, latency_ms)]
    return "inf" if bound == float("inf") else str(bound)


def percentile_upper_bound(buckets: dict[str, int], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (a conservative p99)."""
    total = sum(buckets.values())
    if not total:
        return None
    running = 0
    for bound in LATENCY_BOUNDS_MS:
        label = "inf" if bound == float("inf") else str(bound)
        running += buckets.get(label, 0)
        if running >= q * total:
            return bound
    return float("inf")


class TrafficRecorder:
    """Counts this worker's requests per variant in memory and writes them per minute."""

    def __init__(self, store: TrafficStore):
        self._store = store
        self._lock = threading.Lock()
        self._recorded: collections.deque[tuple[int, str, float, bool]] = collections.deque()
        self._pending: dict[tuple[int, str], dict] = {}  # counted, not yet written

    def record(self, experiment_id: int, variant: str, latency_ms: float, error: bool) -> None:
        self._recorded.append((experiment_id, variant, latency_ms, error))
        if len(self._recorded) > 50_000:  # nobody flushing (supervisor off): stay bounded
            self._count_recorded()

    def _count_recorded(self) -> None:
        with self._lock:
            for _ in range(len(self._recorded)):  # requests append meanwhile, never remove
                experiment_id, variant, latency_ms, error = self._recorded.popleft()
                entry = self._pending.setdefault((experiment_id, variant),
                                                 {"requests": 0, "errors": 0, "buckets": {}})
                entry["requests"] += 1
                entry["errors"] += int(error)
                label = bucket_label(latency_ms)
                entry["buckets"][label] = entry["buckets"].get(label, 0) + 1

    def flush(self, now: datetime) -> None:
        """Write what this worker counted into the window of `now`; kept for the next flush
        if the database is down."""
        self._count_recorded()
        with self._lock:
            pending, self._pending = self._pending, {}
        window = now.replace(second=0, microsecond=0)
        for (experiment_id, variant), entry in pending.items():
            try:
                self._store.add_window(experiment_id, variant, window, entry["requests"],
                                       entry["errors"], entry["buckets"])
            except BackendUnavailable:
                self._merge_back(experiment_id, variant, entry)

    def _merge_back(self, experiment_id: int, variant: str, entry: dict) -> None:
        with self._lock:
            current = self._pending.setdefault((experiment_id, variant),
                                               {"requests": 0, "errors": 0, "buckets": {}})
            current["requests"] += entry["requests"]
            current["errors"] += entry["errors"]
            for label, count in entry["buckets"].items():
                current["buckets"][label] = current["buckets"].get(label, 0) + count

    def since(self, experiment_id: int, since: datetime) -> dict[str, dict]:
        """Requests, errors and latency buckets per variant since a time, all workers."""
        return self._store.since(experiment_id, since)
