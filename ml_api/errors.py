"""The service's error tree. Every error carries an HTTP status and a machine-readable code.

    ApiError (500 internal_error)
    ├── InvalidRequest (400 invalid_request)
    │   └── MalformedJSON (400 malformed_json)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── InvalidFeatures (422 invalid_features)
    ├── NotFound (404 not_found)
    │   └── UnknownExperiment (404 unknown_experiment)
    └── ServiceUnavailable (503 unavailable)

Adapter errors (raised by cache.py and storage.py, never rendered directly):

    BackendUnavailable
    ├── CacheUnavailable
    └── StorageUnavailable
"""
from __future__ import annotations


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict:
        body = {"error": self.code, "message": self.message}
        body.update(self.details)
        return body


class InvalidRequest(ApiError):
    status = 400
    code = "invalid_request"


class MalformedJSON(InvalidRequest):
    code = "malformed_json"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class InvalidFeatures(ApiError):
    status = 422
    code = "invalid_features"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class UnknownExperiment(NotFound):
    code = "unknown_experiment"


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"


class BackendUnavailable(Exception):
    """An external system (Redis, the database) did not answer; callers choose the fallback."""


class CacheUnavailable(BackendUnavailable):
    pass


class StorageUnavailable(BackendUnavailable):
    pass


class ModelIntegrityError(Exception):
    """A model artifact is missing or does not match the sha256 recorded in the manifest."""
