"""Per-request observability for the HTTP layer: one structured event per /predict and
/feedback, Prometheus counters and histograms, and the /metrics endpoint."""
from __future__ import annotations

import time

from flask import Flask, Response, g, request

from . import metrics

LOGGED_ENDPOINTS = {"/predict", "/feedback"}


class _Children:
    """Labelled Prometheus children, looked up once per label set instead of per request."""

    def __init__(self):
        self._requests: dict[tuple, object] = {}
        self._latency: dict[tuple, object] = {}

    def count(self, labels: tuple) -> None:
        child = self._requests.get(labels)
        if child is None:
            child = self._requests[labels] = metrics.REQUESTS.labels(*labels)
        child.inc()

    def observe(self, labels: tuple, seconds: float) -> None:
        child = self._latency.get(labels)
        if child is None:
            child = self._latency[labels] = metrics.LATENCY.labels(*labels)
        child.observe(seconds)


def log_fields(**fields) -> None:
    """Called by views: fields of this request's event (experiment, group, model, ...)."""
    g.setdefault("log_fields", {}).update(fields)


def note_error(code: str) -> None:
    g.error_code = code


def register_observability(app: Flask, events) -> None:
    children = _Children()

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.path
        if endpoint not in LOGGED_ENDPOINTS or "started" not in g:
            return response
        latency = time.perf_counter() - g.started
        fields = dict(g.get("log_fields", {}))
        fields["error_code"] = g.get("error_code")
        # Label values only from served requests: a client's made-up experiment names must
        # not create time series.
        served = response.status_code < 400
        experiment = (fields.get("experiment") or "") if served else ""
        group = (fields.get("group") or "") if served else ""
        children.count((endpoint, experiment, group, str(response.status_code)))
        children.observe((endpoint, experiment, group, fields.pop("model_key", None) or ""),
                         latency)
        events.request(endpoint=endpoint, status=response.status_code,
                       latency_ms=latency * 1000, fields=fields)
        return response

    @app.get("/metrics")
    def _metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)
