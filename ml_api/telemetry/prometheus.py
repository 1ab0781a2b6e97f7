"""Prometheus metrics. Under gunicorn they live in PROMETHEUS_MULTIPROC_DIR (set by
gunicorn_conf.py before any worker starts), so /metrics adds up every worker's counts."""
from __future__ import annotations

import bisect
import collections
import os
import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("ml_api_requests_total", "HTTP requests by endpoint, experiment, group and "
                   "status", ["endpoint", "experiment", "group", "status"])
LATENCY = Histogram("ml_api_request_latency_seconds", "Request latency by endpoint, group and "
                    "model", ["endpoint", "experiment", "group", "model"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
ASSIGNMENT_CACHE = Counter("ml_api_assignment_cache_total", "Assignment lookups by tier "
                           "(memory, redis) and result (hit, miss)", ["tier", "result"])
BACKEND_ERRORS = Counter("ml_api_backend_errors_total", "Errors talking to Redis or the "
                         "database", ["backend"])
LOG_EVENTS_DROPPED = Counter("ml_api_log_events_dropped_total", "Log events dropped because "
                             "the shipping queue was full")


class DeferredCounter:
    """A counter child for the request path. prometheus_client's multiprocess values share one
    process-wide lock; a worker's request threads contending for it (a thread switched out
    while holding it stalls the others) cost more than the request's own work. inc() appends
    to a deque instead, atomic under the GIL with no lock; flush_deferred(), run by the
    publisher of request metrics (observability.py), adds the pending counts."""

    def __init__(self, child):
        self._child = child
        self._ticks: collections.deque[None] = collections.deque()
        _DEFERRED.append(self)

    def inc(self) -> None:
        self._ticks.append(None)

    def flush(self) -> None:
        """Only under _FLUSH_LOCK: other threads append meanwhile, never remove."""
        count = len(self._ticks)
        for _ in range(count):
            self._ticks.popleft()
        if count:
            self._child.inc(count)


_DEFERRED: list[DeferredCounter] = []
_FLUSH_LOCK = threading.Lock()


def flush_deferred() -> None:
    with _FLUSH_LOCK:
        for counter in _DEFERRED:
            counter.flush()


def render() -> tuple[bytes, str]:
    """The exposition text of all workers (multiprocess mode) or of this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class LabelledChildren:
    """Labelled Prometheus children, looked up once per label set instead of per request."""

    def __init__(self):
        self._requests: dict[tuple, object] = {}
        self._latency: dict[tuple, object] = {}

    def count(self, labels: tuple, amount: int = 1) -> None:
        child = self._requests.get(labels)
        if child is None:
            child = self._requests[labels] = REQUESTS.labels(*labels)
        child.inc(amount)

    def observe_many(self, labels: tuple, seconds: list[float]) -> None:
        child = self._latency.get(labels)
        if child is None:
            child = self._latency[labels] = LATENCY.labels(*labels)
        observe_many(child, seconds)


def observe_many(histogram, values: list[float]) -> None:
    """What histogram.observe(v) for each value does, with one update per bucket touched
    instead of two per value (each a locked write to the worker's metrics file). Uses the
    child's bucket fields, as prometheus-client 0.26 (pinned) lays them out; a test checks
    the result against observe()."""
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value
    for bucket, count in zip(histogram._buckets, counts):
        if count:
            bucket.inc(count)
    histogram._sum.inc(sum(values))
