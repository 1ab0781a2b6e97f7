"""Per-request observability for the HTTP layer: one structured event per /predict and
/feedback, Prometheus counters and histograms, and the /metrics endpoint."""
from __future__ import annotations

import time

from flask import Flask, Response, g, request

from . import metrics

LOGGED_ENDPOINTS = {"/predict", "/feedback"}


def log_fields(**fields) -> None:
    """Called by views: fields of this request's event (experiment, group, model, ...)."""
    g.setdefault("log_fields", {}).update(fields)


def note_error(code: str) -> None:
    g.error_code = code


def register_observability(app: Flask, events) -> None:
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
        experiment, group = fields.get("experiment") or "", fields.get("group") or ""
        metrics.REQUESTS.labels(endpoint, experiment, group, str(response.status_code)).inc()
        metrics.LATENCY.labels(endpoint, experiment, group,
                               fields.get("model_key") or "").observe(latency)
        fields.pop("model_key", None)
        events.request(endpoint=endpoint, status=response.status_code,
                       latency_ms=latency * 1000, fields=fields)
        return response

    @app.get("/metrics")
    def _metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)
