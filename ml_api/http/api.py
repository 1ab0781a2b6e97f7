"""HTTP endpoints: parse the request, call one service, return JSON. No domain logic here."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request

from ml_api.http.jsonio import json_response, read_json_body
from ml_api.http.observability import event_fields, log_fields
from ml_api.telemetry.request_log import naive_utc_timestamp, round_ms
from ml_api.validation import LabelRequest, parse_feedback, parse_predict_request

if TYPE_CHECKING:
    from ml_api.wiring import Services

OPENAPI = (Path(__file__).parent.parent / "openapi.json").read_bytes()


def create_api(services: Services) -> Blueprint:
    """The client endpoints, bound to one app's services. Views reach them by closure, not
    through current_app: every attribute read through one of Flask's context proxies
    (current_app, request) is a context lookup on the hot path."""
    api = Blueprint("api", __name__)
    body_limit = services.settings.max_body_bytes

    @api.post("/predict")
    def predict() -> Response:
        started = time.perf_counter()
        current = request._get_current_object()  # one context lookup, not one per attribute
        predict_request = parse_predict_request(read_json_body(current, body_limit))
        fields = event_fields(current)
        fields["uid"] = predict_request.uid
        if predict_request.experiment is not None:  # named in the event if predict() fails
            fields["experiment"] = predict_request.experiment
        result = services.prediction.predict(predict_request)
        fields.update(request_id=result.request_id, experiment=result.experiment,
                      group=result.group, model_name=result.model_name,
                      model_version=result.model_version,
                      model_latency_ms=round_ms(result.model_latency_ms),
                      first_exposure=result.first_exposure)
        body = result.to_dict()
        body["latency_ms"] = round_ms((time.perf_counter() - started) * 1000)
        return json_response(body)

    @api.post("/feedback")
    def feedback() -> Response:
        feedback_request = parse_feedback(read_json_body(request, body_limit))
        if labelled := isinstance(feedback_request, LabelRequest):
            log_fields(request_id=feedback_request.request_id, label=feedback_request.label)
            experiment, receipt = services.outcomes.record_label(feedback_request)
        else:
            log_fields(uid=feedback_request.uid, experiment=feedback_request.experiment,
                       metric=feedback_request.metric, value=feedback_request.value)
            experiment, receipt = services.outcomes.record(feedback_request)
        if not labelled:
            log_fields(**services.outcomes.metric_role(experiment, feedback_request.metric))
        log_fields(experiment=experiment, group=receipt.variant, duplicate=receipt.duplicate,
                   conversion_change=None if receipt.queued or labelled else receipt.converting,
                   exposed_at=naive_utc_timestamp(receipt.exposed_at))
        status = ("queued" if receipt.queued else "duplicate" if receipt.duplicate
                  else "accepted")
        return json_response({"status": status, "experiment": experiment,
                              "group": receipt.variant}, 202)

    @api.get("/openapi.json")
    def openapi() -> Response:
        return Response(OPENAPI, content_type="application/json")

    @api.get("/health")
    def health() -> Response:
        return json_response({"status": "ok"})

    @api.get("/ready")
    def ready() -> Response:
        checks = services.readiness()
        failing = sorted(name for name, state in checks.items() if state != "ok")
        if "models" in failing:
            return json_response({"error": "not_ready", "message": "models are not loaded",
                                  "checks": checks}, 503)
        if failing:
            # Still answering /predict with fallbacks (memory, Redis, the local spool).
            return json_response({"error": "degraded", "message": "serving with fallbacks; "
                                  f"unavailable: {', '.join(failing)}", "checks": checks}, 503)
        return json_response({"status": "ready", "checks": checks})

    return api
