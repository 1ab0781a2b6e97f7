"""Prometheus metrics. Under gunicorn they live in PROMETHEUS_MULTIPROC_DIR (set by
gunicorn_conf.py before any worker starts), so /metrics adds up every worker's counts."""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest,
)
from prometheus_client import multiprocess

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


def render() -> tuple[bytes, str]:
    """The exposition text of all workers (multiprocess mode) or of this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
