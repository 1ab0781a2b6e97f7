"""Per-request observability for the HTTP layer: one structured event per /predict and
/feedback, Prometheus counters and histograms, and the /metrics endpoint.

It sits around Flask as WSGI middleware: the timer starts before Flask sees the request and
stops once the response is built. Each logged request's event starts as a copy of
request_log.REQUEST_EVENT in the WSGI environ, and views add their fields to it (one dict
per request, from start to shipping). The request thread then only appends one tuple to a
deque: no lock, no syscall. When PUBLISH_BATCH records are pending, the request thread that
made it so publishes them as events once gunicorn has sent its response; their latencies
wait for the event shipper's wake-up or /metrics, which update Prometheus once for all of
them (one histogram update per bucket touched, not per request). Why: a gunicorn worker runs
several request threads, and a lock on the request path (prometheus_client's is
process-wide) makes them stall each other.
"""
from __future__ import annotations

import collections
import functools
import threading
import time

from flask import Flask, Request, Response, request
from werkzeug.wsgi import ClosingIterator

from ml_api.telemetry import prometheus
from ml_api.telemetry.prometheus import LabelledChildren
from ml_api.telemetry.request_log import REQUEST_EVENT

LOGGED_ENDPOINTS = frozenset({"/predict", "/feedback"})
FIELDS_KEY = "ml_api.log_fields"  # the environ key of this request's event fields
ERROR_KEY = "error_code"
# A request thread publishes once this many records are pending: batching halves the cost
# per record. Under light traffic the shipper's wake-up publishes the few pending instead.
PUBLISH_BATCH = 16


def log_fields(**fields) -> None:
    """Called by views: fields of this request's event (experiment, group, model, ...).
    None values are left out: an event names only what is known."""
    event_fields().update({name: value for name, value in fields.items() if value is not None})


def event_fields(current: Request | None = None) -> dict:
    """This request's event fields, to fill in place (with no None values). `current`: the
    request object behind flask.request, when the caller has it already."""
    return (current or request).environ.setdefault(FIELDS_KEY, {})


def note_error(code: str, known: dict | None = None) -> None:
    """The error code of this request's event, and what the error says was known when it
    was raised (its `event_fields`): there a None is kept, as null, e.g. for no group."""
    fields = event_fields()
    if known:
        fields.update(known)
    fields[ERROR_KEY] = code


class RequestObserver:
    """WSGI middleware: times each logged request; drain() turns the records into events and
    metrics (the shipper's wake-up, /metrics, and each request thread after its response)."""

    def __init__(self, wsgi_app, events):
        self._app = wsgi_app
        self._events = events
        self._children = LabelledChildren()
        self._recorded: collections.deque[tuple] = collections.deque()
        # Latencies by label set, published as events, not yet in Prometheus (drain lock).
        self._latencies: dict[tuple, list[float]] = {}
        self._drain_lock = threading.Lock()
        self._drain_if_free = functools.partial(self.drain, wait=False)

    def __call__(self, environ, start_response):
        endpoint = environ.get("PATH_INFO")
        if endpoint not in LOGGED_ENDPOINTS:
            return self._app(environ, start_response)
        started = time.perf_counter()
        fields = environ[FIELDS_KEY] = REQUEST_EVENT.copy()  # the views' fields join it
        status = []

        def observed_start_response(status_line, headers, exc_info=None):
            status.append(int(status_line[:3]))
            return start_response(status_line, headers, exc_info)

        # Flask builds the whole response (and calls start_response) before it returns.
        body = self._app(environ, observed_start_response)
        if not status:
            return body
        recorded = self._recorded
        recorded.append((time.time(), endpoint, status[0], time.perf_counter() - started,
                         fields))
        pending = len(recorded)
        if pending < PUBLISH_BATCH:
            if pending == 1:  # the first since the last publishing: the shipper must be up
                self._events.shipper.ensure_running()
            return body  # the shipper's next wake-up, or a later request, publishes it
        # Published once gunicorn has sent the response (it closes the body then).
        return ClosingIterator(body, self._drain_if_free)

    def drain(self, wait: bool = True) -> None:
        """Publish every pending record as an event. With `wait` (the shipper's wake-up,
        /metrics) it also brings Prometheus up to date; without it (a request thread, after
        its response) it returns at once when another thread is publishing: that one, or
        the next, takes these records too. Only the thread holding the lock touches the
        metrics and the event queue, so their own locks are never contended."""
        if self._drain_lock.acquire(blocking=wait):
            try:
                self._publish_pending()
                if wait:
                    self._update_metrics()
            finally:
                self._drain_lock.release()

    def _publish_pending(self) -> None:
        records = [self._recorded.popleft()  # requests append meanwhile, never remove
                   for _ in range(len(self._recorded))]
        # Latencies by everything a label needs; the counts are their lengths.
        latencies = self._latencies
        for _, endpoint, status, latency, fields in records:
            # Label values only from served requests: a client's made-up experiment
            # names must not create time series.
            if status < 400:
                key = (endpoint, status, fields.get("experiment", ""), fields.get("group", ""),
                       fields.get("model_name"), fields.get("model_version"))
            else:
                key = (endpoint, status, "", "", None, None)
            same = latencies.get(key)
            if same is None:
                latencies[key] = [latency]
            else:
                same.append(latency)
        if records:
            self._events.requests(records)

    def _update_metrics(self) -> None:
        latencies, self._latencies = self._latencies, {}
        for (endpoint, status, experiment, group, name, version), values in latencies.items():
            self._children.count((endpoint, experiment, group, str(status)), len(values))
            model = f"{name}@{version}" if name is not None else ""
            self._children.observe_many((endpoint, experiment, group, model), values)
        prometheus.flush_deferred()


def register_observability(app: Flask, events) -> None:
    observer = RequestObserver(app.wsgi_app, events)
    app.wsgi_app = observer
    events.shipper.add_wake_hook(observer.drain)

    @app.get("/metrics")
    def _metrics() -> Response:
        observer.drain()  # this worker's latest requests; other workers' within a wake-up
        body, content_type = prometheus.render()
        return Response(body, content_type=content_type)
