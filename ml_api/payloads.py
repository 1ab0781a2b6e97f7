"""Validation of request bodies into typed values. Pure: no Flask, no I/O."""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

from .errors import InvalidFeatures, InvalidRequest

MAX_UID_LENGTH = 256


class PredictRequest(NamedTuple):
    uid: str
    features: list | dict
    experiment: str | None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _all_numbers(values) -> bool:
    # Exact types first (what a JSON parser gives): one comparison per value on the hot path.
    for value in values:
        kind = type(value)
        if kind is not float and kind is not int and not _is_number(value):
            return False
    return True


def parse_uid(body: dict) -> str:
    uid = body.get("uid")
    if uid is None:
        raise InvalidRequest("'uid' is required")
    if not isinstance(uid, str):
        raise InvalidRequest("'uid' must be a string")
    if not uid.strip():
        raise InvalidRequest("'uid' must not be empty")
    if len(uid) > MAX_UID_LENGTH:
        raise InvalidRequest(f"'uid' must be at most {MAX_UID_LENGTH} characters")
    if not uid.isprintable():
        raise InvalidRequest("'uid' must not contain control characters")
    return uid


def parse_experiment_name(body: dict) -> str | None:
    name = body.get("experiment")
    if name is None:
        return None
    if not isinstance(name, str) or not name or len(name) > 128:
        raise InvalidRequest("'experiment' must be a non-empty string of at most 128 characters")
    return name


def parse_predict_request(body) -> PredictRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    uid = parse_uid(body)
    experiment = parse_experiment_name(body)
    features = body.get("features")
    if features is None:
        raise InvalidRequest("'features' is required")
    if isinstance(features, list):
        if not _all_numbers(features):
            raise InvalidRequest("'features' must be a list of numbers")
    elif isinstance(features, dict):
        if not _all_numbers(features.values()):
            raise InvalidRequest("every value in 'features' must be a number")
    else:
        raise InvalidRequest("'features' must be a list of numbers or an object of name: number")
    return PredictRequest(uid=uid, features=features, experiment=experiment)


def feature_row(features: list | dict, names: Sequence[str]) -> list[float]:
    """The features in the model's order, or InvalidFeatures (wrong count, names, non-finite)."""
    if isinstance(features, dict):
        missing = [n for n in names if n not in features]
        known = set(names)
        unknown = [k for k in features if k not in known]
        if missing or unknown:
            raise InvalidFeatures(
                "feature names do not match the model",
                details={"missing": missing, "unknown": unknown[:20]},
            )
        row = [features[n] for n in names]
    else:
        if len(features) != len(names):
            raise InvalidFeatures(
                f"expected {len(names)} features, got {len(features)}",
                details={"feature_names": list(names)},
            )
        row = features
    try:
        row = list(map(float, row))
    except OverflowError:  # an integer literal too large for a double
        row = [math.inf]
    # A NaN or an infinity makes the sum non-finite; only then (or when finite values
    # overflow the sum) look at each value.
    if not math.isfinite(sum(row)) and not all(map(math.isfinite, row)):
        raise InvalidFeatures("features must be finite numbers (no NaN or Infinity)")
    return row
