"""JSON in and out for the HTTP layer, and the single renderer of every error as JSON."""
from __future__ import annotations

import json
import logging

import orjson
from flask import Flask, Request, Response
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from ml_api.errors import ApiError, BackendUnavailable, MalformedJSON, UnsupportedMediaType
from ml_api.http.observability import note_error

log = logging.getLogger(__name__)


def json_response(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


def read_json_body(request: Request, limit: int):
    """The parsed body; 415 unless the content type is JSON, 400 unless the body is JSON,
    413 past `limit` bytes."""
    # The content type clients send, compared as it is; any other through werkzeug's parsing.
    if request.environ.get("CONTENT_TYPE") != "application/json" and not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    raw = read_body(request, limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # orjson rejects NaN/Infinity literals and numbers beyond a double; the standard parser
    # accepts them so that they get their own, more precise, 422 further on.
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedJSON(f"the body is not valid JSON: {str(exc)[:200]}") from None


def read_body(request: Request, limit: int) -> bytes:
    """The request body, 413 past `limit` bytes, read straight from wsgi.input.

    A body with a Content-Length (what clients send) is read in one read of exactly that
    length, as WSGI prescribes; a chunked one, which only a server that ends the stream
    (wsgi.input_terminated: gunicorn does) can pass on, in one read of at most limit + 1.
    werkzeug's get_data() is not used: with MAX_CONTENT_LENGTH set it reads through a
    LimitedStream whose every read allocates and zeroes a 64 KiB buffer, however small the
    body, and it cuts a chunked body at the limit without an error (a 400 for broken JSON,
    not a 413)."""
    environ = request.environ
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    # A plain length read as it is; any other (none, chunked, malformed) through werkzeug's
    # parsing of the headers.
    if length is not None and length.isdigit() and length.isascii() and len(length) < 19 \
            and "HTTP_TRANSFER_ENCODING" not in environ:
        length = int(length)
    else:
        length = request.content_length
    if length is None:
        if not environ.get("wsgi.input_terminated"):
            return b""  # no length and a stream the server does not end: no readable body
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise RequestEntityTooLarge()
        return body
    if length > limit:
        raise RequestEntityTooLarge()
    body = stream.read(length)
    if len(body) != length:
        raise ClientDisconnected()  # the client sent less than it announced
    return body


def _http_error_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        note_error(exc.code, getattr(exc, "event_fields", None))
        response = json_response(exc.to_dict(), exc.status)
        response.headers.update(getattr(exc, "headers", {}))  # e.g. WWW-Authenticate
        return response

    @app.errorhandler(BackendUnavailable)
    def _backend_unavailable(exc: BackendUnavailable):
        log.error("backend unavailable: %s", exc)
        note_error("backend_unavailable", getattr(exc, "event_fields", None))
        return json_response({"error": "backend_unavailable",
                              "message": "a backing service is unavailable; retry shortly"}, 503)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        # Flask's own errors (404, 405, 413, 400 from werkzeug) in the same JSON shape.
        note_error(_http_error_code(exc))
        response = json_response({"error": _http_error_code(exc), "message": exc.description},
                                 exc.code or 500)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        note_error("internal_error")
        return json_response({"error": "internal_error",
                              "message": "internal error; it has been logged"}, 500)
