"""Every check of a client's input to /predict and /feedback, and the checks of numbers and
names that experiment specs (experiments/specs.py) share. Pure: no I/O."""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from ml_api.errors import InvalidExperiment, InvalidRequest

MAX_UID_LENGTH = 256
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # experiments, variants, metrics


def require_object(body) -> dict:
    """The body itself, or InvalidRequest unless it is a JSON object."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def is_number(value) -> bool:
    """An int or a float; JSON's true and false are not numbers here."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _all_numbers(values) -> bool:
    # Exact types first (what a JSON parser gives): one comparison per value on the hot path.
    for value in values:
        kind = type(value)
        if kind is not float and kind is not int and not is_number(value):
            return False
    return True


def finite_number(value, key: str, low: float | None = None, high: float | None = None,
                  low_open: bool = False, error: type = InvalidExperiment) -> float:
    """`value` if it is a finite number within the bounds, else `error` naming `key`."""
    try:
        finite = is_number(value) and math.isfinite(value)
    except OverflowError:  # an integer too large for a double
        finite = False
    if not finite:
        raise error(f"'{key}' must be a finite number")
    if low is not None and (value < low or (low_open and value == low)):
        raise error(f"'{key}' must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise error(f"'{key}' must be <= {high}")
    return value


def metric_name(body: dict, error: type) -> str:
    """The body's 'metric' (default "conversion"), or `error` unless it is a NAME."""
    metric = body.get("metric", "conversion")
    if not isinstance(metric, str) or not NAME.match(metric):
        raise error("'metric' must be a name like 'conversion'")
    return metric


class PredictRequest(NamedTuple):
    """A validated /predict body."""
    uid: str
    features: list | dict
    experiment: str | None
    covariate: float | None = None  # pre-exposure value, kept with a first exposure (CUPED)


def parse_uid(body: dict) -> str:
    """The body's uid: a printable, non-empty string of at most MAX_UID_LENGTH."""
    uid = body.get("uid")
    problem = ("is required" if uid is None else "must be a string" if not isinstance(uid, str)
               else "must not be empty" if not uid.strip()
               else f"must be at most {MAX_UID_LENGTH} characters" if len(uid) > MAX_UID_LENGTH
               else "must not contain control characters" if not uid.isprintable() else None)
    if problem:
        raise InvalidRequest(f"'uid' {problem}")
    return uid


def parse_experiment_name(body: dict) -> str | None:
    """The experiment the body names, or None for the default one."""
    name = body.get("experiment")
    if name is not None and (not isinstance(name, str) or not name or len(name) > 128):
        raise InvalidRequest("'experiment' must be a non-empty string of at most 128 characters")
    return name


def parse_predict_request(body) -> PredictRequest:
    """A /predict body checked into a PredictRequest (serving.prediction.feature_row then
    checks the features against the model)."""
    body = require_object(body)
    uid = parse_uid(body)
    experiment = parse_experiment_name(body)
    features = body.get("features")
    if features is None:
        raise InvalidRequest("'features' is required")
    elif isinstance(features, list):
        if not _all_numbers(features):
            raise InvalidRequest("'features' must be a list of numbers")
    elif isinstance(features, dict):
        if not _all_numbers(features.values()):
            raise InvalidRequest("every value in 'features' must be a number")
    else:
        raise InvalidRequest("'features' must be a list of numbers or an object of name: number")
    if (covariate := body.get("covariate")) is not None:
        covariate = float(finite_number(covariate, "covariate", error=InvalidRequest))
    return PredictRequest(uid, features, experiment, covariate)


class FeedbackRequest(NamedTuple):
    """A validated /feedback body."""
    uid: str
    experiment: str | None
    metric: str
    value: float
    event_id: str | None


class LabelRequest(NamedTuple):
    """A validated /feedback body carrying a prediction's true label."""
    request_id: str
    label: int  # 1: the positive class (the model's second) is the truth
    token: str


def parse_feedback(body) -> FeedbackRequest | LabelRequest:
    """A /feedback body checked into a FeedbackRequest, or a LabelRequest if it has a label."""
    body = require_object(body)
    if "label" in body:
        label, request_id, token = body["label"], body.get("request_id"), body.get("label_token")
        if label not in (0, 1) or type(label) is float:
            raise InvalidRequest("'label' must be 0, 1, true or false")
        for key, value, limit in (("request_id", request_id, 64), ("label_token", token, 1024)):
            if not isinstance(value, str) or not 0 < len(value) <= limit:
                raise InvalidRequest(f"'{key}' must be the {key} that /predict answered with")
        return LabelRequest(request_id, int(label), token)
    uid, experiment = parse_uid(body), parse_experiment_name(body)
    metric = metric_name(body, InvalidRequest)
    value = float(finite_number(body.get("value", 1), "value", error=InvalidRequest))
    event_id = body.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= 128
                                 or not event_id.isprintable()):
        raise InvalidRequest("'event_id' must be a printable string of 1-128 characters")
    return FeedbackRequest(uid, experiment, metric, value, event_id)
