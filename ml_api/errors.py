"""The service's error tree. Every error carries an HTTP status and a machine-readable code.

    ApiError (500 internal_error)
    ├── ModelFailure (500 model_error)
    ├── InvalidRequest (400 invalid_request)
    │   ├── MalformedJSON (400 malformed_json)
    │   └── InvalidLabelToken (400 invalid_label_token)
    ├── Unauthorized (401 unauthorized)
    ├── NotFound (404 not_found)
    │   ├── UnknownExperiment (404 unknown_experiment)
    │   └── UnknownAssignment (404 unknown_assignment)
    ├── Conflict (409 conflict)
    │   ├── DuplicateExperiment (409 duplicate_experiment)
    │   ├── IllegalTransition (409 illegal_transition)
    │   └── ConcurrentChange (409 concurrent_change)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── InvalidFeatures (422 invalid_features)
    ├── InvalidExperiment (422 invalid_experiment)
    └── ServiceUnavailable (503 unavailable)

Adapter errors (raised by ml_api.assignment.caches and ml_api.records, never rendered
directly):

    BackendUnavailable (rendered as 503 backend_unavailable if nothing handles it)
    ├── CacheUnavailable
    └── StorageUnavailable
        ├── TransientConflict
        │   └── StaleConnection
        └── AssignmentUnconfirmed

Start-up errors (the process refuses to start, with the message):

    ModelIntegrityError, ConfigurationError, SchemaNotInitialised
"""
from __future__ import annotations


class ApiError(Exception):
    """An error a client sees: its HTTP status, a machine-readable code and a message."""

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


class InvalidLabelToken(InvalidRequest):
    code = "invalid_label_token"


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


class ModelFailure(ApiError):
    status = 500
    code = "model_error"


class BackendUnavailable(Exception):
    """An external system (Redis, the database) did not answer; callers choose the fallback."""

class CacheUnavailable(BackendUnavailable):
    pass


class StorageUnavailable(BackendUnavailable):
    pass


class TransientConflict(StorageUnavailable):
    """A deadlock or lock-wait timeout: running the transaction again may succeed."""


class StaleConnection(TransientConflict):
    """The server had dropped the pooled connection: worth one more try on a new one."""

class AssignmentUnconfirmed(StorageUnavailable):
    """Neither Redis nor the database can tell a uid's group, and the hash may not give the
    group it was first given (the weights changed since the start, or a strategy sets them)."""

def with_event_fields(exc: Exception, **fields) -> Exception:
    """Attach what was known when `exc` was raised (experiment, group, model), for the failed
    request's event; None says "not known yet", e.g. no group before the assignment."""
    exc.event_fields = fields
    return exc


class ModelIntegrityError(Exception):
    """A model artifact is missing or does not match the sha256 recorded in the manifest."""

class ConfigurationError(RuntimeError):
    """A setting is missing or has a value the service cannot run with."""

class SchemaNotInitialised(RuntimeError):
    """The database schema is missing or older than this code's migrations."""

class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class DuplicateExperiment(Conflict):
    code = "duplicate_experiment"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class ConcurrentChange(Conflict):
    code = "concurrent_change"


class InvalidExperiment(ApiError):
    status = 422
    code = "invalid_experiment"


class UnknownAssignment(NotFound):
    code = "unknown_assignment"
