"""HTTP endpoints: parse the request, call one service, return JSON. No domain logic here."""
from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, request

from .jsonio import json_response, read_json_body
from .outcomes import parse_feedback
from .payloads import parse_predict_request

api = Blueprint("api", __name__)


def _services():
    return current_app.extensions["ml_api"]


@api.post("/predict")
def predict() -> Response:
    started = time.perf_counter()
    predict_request = parse_predict_request(read_json_body(request))
    result = _services().prediction.predict(predict_request)
    body = result.to_dict()
    body["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return json_response(body)


@api.post("/feedback")
def feedback() -> Response:
    experiment, receipt = _services().outcomes.record(parse_feedback(read_json_body(request)))
    return json_response({"status": "duplicate" if receipt.duplicate else "accepted",
                          "experiment": experiment, "group": receipt.variant}, 202)


@api.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})


@api.get("/ready")
def ready() -> Response:
    checks = _services().readiness()
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if failing:
        return json_response({"error": "not_ready", "message": f"not ready: {', '.join(failing)}",
                              "checks": checks}, 503)
    return json_response({"status": "ready", "checks": checks})
