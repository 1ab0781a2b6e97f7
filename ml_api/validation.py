"""Every check of a client's input: /predict, /feedback and experiment specs. Pure: no I/O."""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from ml_api.errors import InvalidExperiment, InvalidRequest
from ml_api.experiments.values import DEFAULT_SETTINGS, STRATEGIES

MAX_UID_LENGTH = 256
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # experiments, variants, metrics
SPEC_KEYS = {"name", "variants", "strategy", "metric", "salt", *DEFAULT_SETTINGS}
# The decisive test (cuped) is fixed at creation: no guarantee covers a switch between looks.
PATCH_KEYS = {"weights", "variants", *DEFAULT_SETTINGS} - {"cuped"}


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


def validate_canary(canary) -> dict:
    """A canary's settings with their defaults filled in."""
    if not isinstance(canary, dict):
        raise InvalidExperiment("'canary' must be an object")
    steps = canary.get("steps", [1, 5, 25, 50])
    if not isinstance(steps, list) or not steps:
        raise InvalidExperiment("'canary.steps' must be a list of percentages")
    for step in steps:
        finite_number(step, "canary.steps", 0, 100, low_open=True)
    if steps != sorted(steps):
        raise InvalidExperiment("'canary.steps' must increase")
    setting = lambda key, default, *bounds, **options: finite_number(  # noqa: E731
        canary.get(key, default), f"canary.{key}", *bounds, **options)
    return {"steps": steps,
            "hold_seconds": setting("hold_seconds", 3600, 0, low_open=True),
            "max_error_rate": setting("max_error_rate", 0.01, 0, 1),
            "max_p99_ms": setting("max_p99_ms", 250, 0, low_open=True),
            "min_requests": int(setting("min_requests", 100, 0))}


def validate_guardrails(guardrails) -> list[dict]:
    """[{metric, worse: "higher" or "lower", tolerance >= 0}, ...], checked."""
    if not isinstance(guardrails, list) or not all(isinstance(g, dict) for g in guardrails) \
            or not all(g.get("worse") in ("higher", "lower") for g in guardrails):
        raise InvalidExperiment("'guardrails' must list {metric, worse: higher or lower, "
                                "tolerance}")
    return [{"metric": metric_name(g, InvalidExperiment), "worse": g["worse"],
             "tolerance": finite_number(g.get("tolerance", 0), "guardrails.tolerance", 0)}
            for g in guardrails]


def validate_settings(body: dict, n_variants: int) -> dict:
    """The experiment settings present in body, checked; unknown keys are not looked at."""
    checks = {
        "metric_type": lambda v: v if v in ("conversion", "mean") else None,
        "alpha": lambda v: finite_number(v, "alpha", 0, 0.5, low_open=True),
        "min_sample_size": lambda v: int(finite_number(v, "min_sample_size", 0)),
        "max_duration_hours": lambda v: None if v is None else finite_number(
            v, "max_duration_hours", 0, low_open=True),
        "auto_stop": lambda v: v if isinstance(v, bool) else None,
        "cuped": lambda v: v if isinstance(v, bool) else None,
        "mde": lambda v: finite_number(v, "mde", 0, low_open=True),
        "tau": lambda v: None if v is None else finite_number(v, "tau", 0, low_open=True),
        "quality_tau": lambda v: finite_number(v, "quality_tau", 0, low_open=True),
        "epsilon": lambda v: finite_number(v, "epsilon", 0, 1),
        "min_share": lambda v: finite_number(v, "min_share", 0, 1 / n_variants),
        "canary": lambda v: None if v is None else validate_canary(v),
        "guardrails": lambda v: None if v is None else validate_guardrails(v),
    }
    settings = {}
    for key, check in checks.items():
        if key in body:
            value = check(body[key])
            if value is None and body[key] is not None:
                raise InvalidExperiment(f"'{key}' has an invalid value: {body[key]!r}")
            settings[key] = value
    return settings


def parse_weights(items, known: set[str]) -> dict[str, float]:
    """{name: weight} from [{name, weight}, ...] naming only `known` variants."""
    weights = {}
    for item in items:
        if not isinstance(item, dict) or item.get("name") not in known:
            raise InvalidExperiment(f"unknown variant in {item!r}")
        weights[item["name"]] = finite_number(item.get("weight"), "weight", 0)
    return weights


def parse_experiment_spec(body, registry) -> dict:
    """A new experiment's spec, its models looked up in `registry` (ModelRegistry)."""
    body = require_object(body)
    if unknown := sorted(set(body) - SPEC_KEYS):
        raise InvalidExperiment(f"unknown fields: {', '.join(unknown)}")
    if not isinstance(name := body.get("name"), str) or not NAME.match(name):
        raise InvalidExperiment("'name' must be 1-64 letters, digits, '_', '.' or '-'")
    if not isinstance(variants := body.get("variants"), list) or len(variants) < 2:
        raise InvalidExperiment("'variants' must list at least two variants")
    parsed = []
    for v in variants:
        if not isinstance(v, dict) or not isinstance(v.get("name"), str) \
                or not NAME.match(v["name"]):
            raise InvalidExperiment("each variant needs a 'name' of 1-64 letters, digits, "
                                    "'_', '.' or '-'")
        if not isinstance(v.get("model"), str) or registry.get(v["model"]) is None:
            raise InvalidExperiment(f"variant {v['name']!r}: unknown model {v.get('model')!r}; "
                                    "use name@version from the manifest")
        parsed.append({"name": v["name"], "model": v["model"],
                       "weight": finite_number(v.get("weight", 1), "weight", 0)})
    if len({v["name"] for v in parsed}) != len(parsed):
        raise InvalidExperiment("variant names must be unique")
    if sum(v["weight"] for v in parsed) <= 0:
        raise InvalidExperiment("weights must not all be zero")
    if len({registry.get(v["model"]).spec.feature_names for v in parsed}) != 1:
        raise InvalidExperiment("every variant's model must take the same features")
    if (strategy := body.get("strategy", "hash")) not in STRATEGIES:
        raise InvalidExperiment(f"'strategy' must be one of {', '.join(STRATEGIES)}")
    metric = metric_name(body, InvalidExperiment)
    if not isinstance(salt := body.get("salt", name), str) or not 0 < len(salt) <= 128:
        raise InvalidExperiment("'salt' must be a string of 1-128 characters")
    return {"name": name, "variants": parsed, "strategy": strategy, "metric": metric,
            "salt": salt, "settings": validate_settings(body, len(parsed))}
