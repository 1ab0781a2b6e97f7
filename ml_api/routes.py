"""HTTP endpoints: parse the request, call one service, return JSON. No domain logic here."""
from __future__ import annotations

import time
from pathlib import Path

from flask import Blueprint, Response, current_app, request

from .jsonio import json_response, read_json_body
from .observability import event_fields, log_fields
from .outcomes import parse_feedback
from .payloads import parse_predict_request

api = Blueprint("api", __name__)
OPENAPI = (Path(__file__).with_name("openapi.json")).read_bytes()


def _services():
    return current_app.extensions["ml_api"]


@api.post("/predict")
def predict() -> Response:
    started = time.perf_counter()
    predict_request = parse_predict_request(read_json_body(request))
    fields = event_fields()
    fields["uid"] = predict_request.uid
    fields["experiment"] = predict_request.experiment
    result = _services().prediction.predict(predict_request)
    fields.update(request_id=result.request_id, experiment=result.experiment, group=result.group,
                  model_name=result.model_name, model_version=result.model_version,
                  model_latency_ms=round(result.model_latency_ms, 3))
    body = result.to_dict()
    body["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return json_response(body)


@api.post("/feedback")
def feedback() -> Response:
    feedback_request = parse_feedback(read_json_body(request))
    log_fields(uid=feedback_request.uid, experiment=feedback_request.experiment,
               metric=feedback_request.metric, value=feedback_request.value)
    experiment, receipt = _services().outcomes.record(feedback_request)
    log_fields(experiment=experiment, group=receipt.variant, duplicate=receipt.duplicate)
    status = "queued" if receipt.queued else "duplicate" if receipt.duplicate else "accepted"
    return json_response({"status": status, "experiment": experiment, "group": receipt.variant},
                         202)


@api.get("/openapi.json")
def openapi() -> Response:
    return Response(OPENAPI, content_type="application/json")


@api.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})


@api.get("/ready")
def ready() -> Response:
    checks = _services().readiness()
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if "models" in failing:
        return json_response({"error": "not_ready", "message": "models are not loaded",
                              "checks": checks}, 503)
    if failing:
        # Still answering /predict with fallbacks (memory, Redis, the local spool).
        return json_response({"error": "degraded", "message": "serving with fallbacks; "
                              f"unavailable: {', '.join(failing)}", "checks": checks}, 503)
    return json_response({"status": "ready", "checks": checks})
