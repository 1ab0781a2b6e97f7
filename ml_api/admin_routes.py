"""Admin HTTP endpoints, all behind `Authorization: Bearer <ADMIN_TOKEN>`. Thin: each calls
one ExperimentAdmin method."""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from .errors import Unauthorized
from .jsonio import json_response, read_json_body

admin = Blueprint("admin", __name__)


def _admin():
    return current_app.extensions["ml_api"].admin


def _body():
    return read_json_body(request, current_app.extensions["ml_api"].settings.max_body_bytes)


def _actor() -> str:
    """Who made the change, for the audit log: the X-Actor header, else "admin"."""
    actor = request.headers.get("X-Actor", "").strip()
    return actor[:128] if actor and actor.isprintable() else "admin"


@admin.before_request
def require_token() -> None:
    token = current_app.extensions["ml_api"].settings.admin_token
    if not token:
        raise Unauthorized("the admin API is disabled: ADMIN_TOKEN is not set")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest takes the same time wherever the strings differ: no timing oracle.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("missing or wrong bearer token")


@admin.post("/experiments")
def create_experiment() -> Response:
    return json_response(_admin().create(_body(), _actor()), 201)


@admin.get("/experiments")
def list_experiments() -> Response:
    return json_response({"experiments": _admin().list()})


@admin.get("/experiments/<name>")
def get_experiment(name: str) -> Response:
    return json_response(_admin().get(name))


@admin.patch("/experiments/<name>")
def patch_experiment(name: str) -> Response:
    return json_response(_admin().patch(name, _body(), _actor()))


@admin.post("/experiments/<name>/<any(start, pause, stop):action>")
def transition(name: str, action: str) -> Response:
    return json_response(_admin().transition(name, action, _actor()))


@admin.post("/experiments/<name>/promote")
def promote(name: str) -> Response:
    return json_response(_admin().promote(name, _body(), _actor()))


@admin.get("/experiments/<name>/results")
def results(name: str) -> Response:
    return json_response(_admin().results(name))


@admin.get("/experiments/<name>/audit")
def audit(name: str) -> Response:
    return json_response({"experiment": name, "entries": _admin().audit(name)})
