"""The checks of an experiment's spec and settings, for creating and patching it, on the
shared checks of validation.py. Pure: no I/O."""
from __future__ import annotations

from ml_api.domain.experiments import DEFAULT_SETTINGS, STRATEGIES
from ml_api.errors import InvalidExperiment
from ml_api.validation import NAME, finite_number, metric_name, require_object

SPEC_KEYS = {"name", "variants", "strategy", "metric", "salt", *DEFAULT_SETTINGS}
# The decisive test (cuped) is fixed at creation: no guarantee covers a switch between looks.
PATCH_KEYS = {"weights", "variants", *DEFAULT_SETTINGS} - {"cuped"}
# The settings that define the tests (tau defaults to mde) are fixed once the experiment has
# started: looks taken under one test and read under another would mix two tests, and a tau
# chosen after seeing data is not covered by the always-valid guarantee.
TEST_KEYS = {"alpha", "tau", "mde", "metric_type", "quality_tau", "quality_mde"}


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
        "quality_mde": lambda v: finite_number(v, "quality_mde", 0, low_open=True),
        "quality_tau": lambda v: None if v is None else finite_number(v, "quality_tau", 0,
                                                                      low_open=True),
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
    """A new experiment's spec, its models looked up in `registry` (domain.models.Models)."""
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
