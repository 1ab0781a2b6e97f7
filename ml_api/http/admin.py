"""Admin HTTP endpoints, all behind `Authorization: Bearer <ADMIN_TOKEN>`. Thin: each calls
one ExperimentAdmin method."""
from __future__ import annotations

import base64
import binascii
import hmac

from flask import Blueprint, Response, request

from ml_api.errors import Unauthorized
from ml_api.experiments.admin import ExperimentAdmin
from ml_api.http.jsonio import json_response, read_json_body
from ml_api.http.kibana_link import kibana_dashboard_url


def check_admin_token(token: str, browser: bool = False) -> None:
    """Raise Unauthorized unless this request carries `token` as its bearer token, or, with
    `browser`, as the password of HTTP Basic credentials, which a browser asks for itself
    after a 401 that names the Basic scheme."""
    if not token:
        raise Unauthorized("the admin API is disabled: ADMIN_TOKEN is not set")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if browser and scheme.lower() == "basic":
        try:
            given = base64.b64decode(given, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = ""
        scheme = "bearer"
    # compare_digest takes the same time wherever the strings differ: no timing oracle.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        error = Unauthorized("missing or wrong bearer token")
        if browser:
            error.headers = {"WWW-Authenticate": 'Basic realm="ml_api results"'}
        raise error


def _actor() -> str:
    """Who made the change, for the audit log: the X-Actor header, else "admin"."""
    actor = request.headers.get("X-Actor", "").strip()
    return actor[:128] if actor and actor.isprintable() else "admin"


def create_admin(experiments: ExperimentAdmin, token: str, body_limit: int,
                 kibana_url: str = "") -> Blueprint:
    """The admin endpoints, bound to one app's ExperimentAdmin and token; results link to
    the Kibana dashboard at `kibana_url` when it is set."""
    admin = Blueprint("admin", __name__)

    def body():
        return read_json_body(request, body_limit)

    @admin.before_request
    def require_token() -> None:
        check_admin_token(token)

    @admin.post("/experiments")
    def create_experiment() -> Response:
        return json_response(experiments.create(body(), _actor()), 201)

    @admin.get("/experiments")
    def list_experiments() -> Response:
        return json_response({"experiments": experiments.list()})

    @admin.get("/experiments/<name>")
    def get_experiment(name: str) -> Response:
        return json_response(experiments.get(name))

    @admin.patch("/experiments/<name>")
    def patch_experiment(name: str) -> Response:
        return json_response(experiments.patch(name, body(), _actor()))

    @admin.post("/experiments/<name>/<any(start, pause, stop):action>")
    def transition(name: str, action: str) -> Response:
        return json_response(experiments.transition(name, action, _actor()))

    @admin.post("/experiments/<name>/promote")
    def promote(name: str) -> Response:
        return json_response(experiments.promote(name, body(), _actor()))

    @admin.get("/experiments/<name>/results")
    def results(name: str) -> Response:
        if not kibana_url:
            return json_response(experiments.results(name))
        body, since = experiments.results_and_start(name)
        body["kibana_url"] = kibana_dashboard_url(kibana_url, name, since)
        return json_response(body)

    @admin.get("/experiments/<name>/audit")
    def audit(name: str) -> Response:
        return json_response({"experiment": name, "entries": experiments.audit(name)})

    return admin
