"""Experiment administration: validated specs, the status machine, promote/rollback, audit.

Used by the admin HTTP routes and the CLI alike; no Flask here. Every change is a
compare-and-set on the experiment's version with its audit entry in the same transaction.
"""
from __future__ import annotations

import math
import re
from .analysis import experiment_results
from .errors import (
    DuplicateExperiment, IllegalTransition, InvalidExperiment, InvalidRequest, UnknownExperiment,
)
from .event_store import EventStore
from .experiments import (
    DEFAULT_SETTINGS, DRAFT, PAUSED, RUNNING, STOPPED, STRATEGIES, Experiment,
    ExperimentCatalog, Variant,
)
from .model_registry import ModelRegistry
from .storage import SqlStore, utcnow

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# action -> (statuses it may start from, status it leads to)
TRANSITIONS = {
    "start": ({DRAFT, PAUSED}, RUNNING),
    "pause": ({RUNNING}, PAUSED),
    "stop": ({RUNNING, PAUSED}, STOPPED),
}
SPEC_KEYS = {"name", "variants", "strategy", "metric", "salt", *DEFAULT_SETTINGS}


def _number(value, key: str, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidExperiment(f"'{key}' must be a finite number")
    if low is not None and (value < low or (low_open and value == low)):
        raise InvalidExperiment(f"'{key}' must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise InvalidExperiment(f"'{key}' must be <= {high}")
    return value


def validate_canary(canary) -> dict:
    if not isinstance(canary, dict):
        raise InvalidExperiment("'canary' must be an object")
    steps = canary.get("steps", [1, 5, 25, 50])
    if not isinstance(steps, list) or not steps:
        raise InvalidExperiment("'canary.steps' must be a list of percentages")
    for step in steps:
        _number(step, "canary.steps", 0, 100, low_open=True)
    if steps != sorted(steps):
        raise InvalidExperiment("'canary.steps' must increase")
    return {
        "steps": steps,
        "hold_seconds": _number(canary.get("hold_seconds", 3600), "canary.hold_seconds", 0,
                                low_open=True),
        "max_error_rate": _number(canary.get("max_error_rate", 0.01), "canary.max_error_rate",
                                  0, 1),
        "max_p99_ms": _number(canary.get("max_p99_ms", 250), "canary.max_p99_ms", 0,
                              low_open=True),
        "min_requests": int(_number(canary.get("min_requests", 100), "canary.min_requests", 0)),
    }


def validate_settings(body: dict, n_variants: int) -> dict:
    """The experiment settings present in body, checked; unknown keys are not looked at."""
    checks = {
        "metric_type": lambda v: v if v in ("conversion", "mean") else None,
        "alpha": lambda v: _number(v, "alpha", 0, 0.5, low_open=True),
        "min_sample_size": lambda v: int(_number(v, "min_sample_size", 0)),
        "max_duration_hours": lambda v: None if v is None else _number(
            v, "max_duration_hours", 0, low_open=True),
        "auto_stop": lambda v: v if isinstance(v, bool) else None,
        "mde": lambda v: _number(v, "mde", 0, low_open=True),
        "tau": lambda v: None if v is None else _number(v, "tau", 0, low_open=True),
        "epsilon": lambda v: _number(v, "epsilon", 0, 1),
        "min_share": lambda v: _number(v, "min_share", 0, 1 / n_variants),
        "canary": lambda v: None if v is None else validate_canary(v),
    }
    settings = {}
    for key, check in checks.items():
        if key in body:
            value = check(body[key])
            if value is None and body[key] is not None:
                raise InvalidExperiment(f"'{key}' has an invalid value: {body[key]!r}")
            settings[key] = value
    return settings


def _weights(items, known: set[str]) -> dict[str, float]:
    weights = {}
    for item in items:
        if not isinstance(item, dict) or item.get("name") not in known:
            raise InvalidExperiment(f"unknown variant in {item!r}")
        weights[item["name"]] = _number(item.get("weight"), "weight", 0)
    return weights


class ExperimentAdmin:
    def __init__(self, store: SqlStore, events: EventStore, registry: ModelRegistry,
                 catalog: ExperimentCatalog):
        self._store = store
        self._events = events
        self._registry = registry
        self._catalog = catalog

    # --- reading ---------------------------------------------------------------------------

    def _load(self, name: str) -> Experiment:
        experiment = self._store.load_experiment(name)
        if experiment is None:
            raise UnknownExperiment(f"no experiment named {name!r}")
        return experiment

    def describe(self, experiment: Experiment) -> dict:
        settings = {key: experiment.setting(key) for key in DEFAULT_SETTINGS}
        return {
            "name": experiment.name, "status": experiment.status,
            "strategy": experiment.strategy, "metric": experiment.metric,
            "salt": experiment.salt, "serving_variant": experiment.serving_variant.name,
            "default_variant": experiment.default_variant, "version": experiment.version,
            "variants": [{"name": v.name, "model": v.model_key, "weight": v.weight}
                         for v in experiment.variants],
            "settings": settings,
            "canary_step": experiment.config.get("canary_step") if experiment.strategy
            == "canary" else None,
            **self._store.experiment_times(experiment.id),
        }

    def list(self) -> list[dict]:
        return [self.describe(e) for e in sorted(self._store.load_experiments(),
                                                 key=lambda e: e.name)]

    def get(self, name: str) -> dict:
        return self.describe(self._load(name))

    def audit(self, name: str) -> list[dict]:
        return self._store.audit_entries(self._load(name).id)

    def results(self, name: str) -> dict:
        from .strategies import with_live_weights

        experiment = self._load(name)
        exposures, expected = self._events.exposure_counters(experiment.id)
        sums = self._events.metric_sums(experiment.id, experiment.metric)
        experiment = with_live_weights(experiment, exposures,
                                       {v: s.users for v, s in sums.items()})
        results = experiment_results(experiment, exposures, expected, sums)
        if experiment.strategy == "shadow":
            results["shadow"] = self._shadow_report(experiment)
        return results

    def _shadow_report(self, experiment: Experiment) -> list[dict]:
        report = []
        for name, c in self._events.shadow_summary(experiment.id).items():
            n = c["comparisons"]
            report.append({"variant": name, "against": experiment.control.name,
                           "comparisons": n, "agreement_rate": c["agreements"] / n if n else None,
                           "primary_mean_ms": c["primary_ms_sum"] / n if n else None,
                           "shadow_mean_ms": c["shadow_ms_sum"] / n if n else None})
        return report

    # --- changing --------------------------------------------------------------------------

    def create(self, body, actor: str) -> dict:
        spec = self._parse_spec(body)
        if self._store.experiment_exists(spec["name"]):
            raise DuplicateExperiment(f"an experiment named {spec['name']!r} exists")
        variants = [Variant(v["name"], v["model"], v["weight"]) for v in spec["variants"]]
        config = dict(spec["settings"])
        if spec["strategy"] == "canary":
            config["canary"] = config.get("canary") or validate_canary({})
            config["canary_step"] = 0
        self._store.create_experiment(
            spec["name"], variants, status=DRAFT, salt=spec["salt"], strategy=spec["strategy"],
            metric=spec["metric"], config=config, actor=actor,
            audit_after={k: v for k, v in spec.items() if k != "settings"} | {"config": config})
        return self._changed(spec["name"])

    def _parse_spec(self, body) -> dict:
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        unknown = sorted(set(body) - SPEC_KEYS)
        if unknown:
            raise InvalidExperiment(f"unknown fields: {', '.join(unknown)}")
        name = body.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidExperiment("'name' must be 1-64 letters, digits, '_', '.' or '-'")
        variants = body.get("variants")
        if not isinstance(variants, list) or len(variants) < 2:
            raise InvalidExperiment("'variants' must list at least two variants")
        parsed = []
        for v in variants:
            if not isinstance(v, dict) or not isinstance(v.get("name"), str) \
                    or not NAME.match(v["name"]):
                raise InvalidExperiment("each variant needs a 'name' of 1-64 letters, digits, "
                                        "'_', '.' or '-'")
            model = self._registry.get(v.get("model")) if isinstance(v.get("model"), str) \
                else None
            if model is None:
                raise InvalidExperiment(f"variant {v['name']!r}: unknown model "
                                        f"{v.get('model')!r}; use name@version from the "
                                        "manifest")
            parsed.append({"name": v["name"], "model": v["model"],
                           "weight": _number(v.get("weight", 1), "weight", 0)})
        if len({v["name"] for v in parsed}) != len(parsed):
            raise InvalidExperiment("variant names must be unique")
        if sum(v["weight"] for v in parsed) <= 0:
            raise InvalidExperiment("weights must not all be zero")
        features = {self._registry.get(v["model"]).spec.feature_names for v in parsed}
        if len(features) != 1:
            raise InvalidExperiment("every variant's model must take the same features")
        strategy = body.get("strategy", "hash")
        if strategy not in STRATEGIES:
            raise InvalidExperiment(f"'strategy' must be one of {', '.join(STRATEGIES)}")
        metric = body.get("metric", "conversion")
        if not isinstance(metric, str) or not NAME.match(metric):
            raise InvalidExperiment("'metric' must be a name like 'conversion'")
        salt = body.get("salt", name)
        if not isinstance(salt, str) or not 0 < len(salt) <= 128:
            raise InvalidExperiment("'salt' must be a string of 1-128 characters")
        return {"name": name, "variants": parsed, "strategy": strategy, "metric": metric,
                "salt": salt, "settings": validate_settings(body, len(parsed))}

    def patch(self, name: str, body, actor: str) -> dict:
        experiment = self._load(name)
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        unknown = sorted(set(body) - {"weights", "variants", *DEFAULT_SETTINGS})
        if unknown:
            raise InvalidExperiment(f"these fields cannot be changed: {', '.join(unknown)}")
        known = {v.name for v in experiment.variants}
        weights = {}
        if "weights" in body:
            if not isinstance(body["weights"], dict):
                raise InvalidExperiment("'weights' must be an object of variant: weight")
            weights = _weights([{"name": k, "weight": w} for k, w in body["weights"].items()],
                               known)
        if "variants" in body:
            if not isinstance(body["variants"], list):
                raise InvalidExperiment("'variants' must be a list of {name, weight}")
            weights.update(_weights(body["variants"], known))
        new_weights = {v.name: weights.get(v.name, v.weight) for v in experiment.variants}
        if sum(new_weights.values()) <= 0:
            raise InvalidExperiment("weights must not all be zero")
        settings = validate_settings(body, len(experiment.variants))
        config = {**experiment.config, **settings}
        before = {"weights": {v.name: v.weight for v in experiment.variants},
                  "settings": {k: experiment.config.get(k) for k in settings}}
        after = {"weights": new_weights, "settings": settings}
        self._store.update_experiment(experiment, actor=actor, action="update", before=before,
                                      after=after, columns={"config": config}, weights=weights)
        return self._changed(name)

    def transition(self, name: str, action: str, actor: str, reason: str | None = None) -> dict:
        experiment = self._load(name)
        allowed, target = TRANSITIONS[action]
        if experiment.status not in allowed:
            raise IllegalTransition(
                f"cannot {action} an experiment that is {experiment.status}")
        columns = {"status": target}
        if action == "start" and experiment.started_at is None:
            columns["started_at"] = utcnow()
            if experiment.strategy == "canary":
                columns["config"] = {**experiment.config, "canary_step": 0,
                                     "canary_step_started_at": columns["started_at"].isoformat()}
        after = {"status": target, **({"reason": reason} if reason else {})}
        self._store.update_experiment(
            experiment, actor=actor, action=action, before={"status": experiment.status},
            after=after, columns=columns)
        return self._changed(name)

    def set_canary_step(self, name: str, step: int, now, actor: str) -> dict:
        experiment = self._load(name)
        percent = experiment.setting("canary")["steps"][step]
        config = {**experiment.config, "canary_step": step,
                  "canary_step_started_at": now.isoformat()}
        self._store.update_experiment(
            experiment, actor=actor, action="canary_step",
            before={"canary_step": experiment.config.get("canary_step", 0)},
            after={"canary_step": step, "challenger_percent": percent},
            columns={"config": config})
        return self._changed(name)

    def promote(self, name: str, body, actor: str, reason: str | None = None,
                action: str = "promote") -> dict:
        """Serve one variant to everyone from now on (stops the experiment). Promoting the
        control is the rollback."""
        experiment = self._load(name)
        variant = body.get("variant") if isinstance(body, dict) else None
        if not isinstance(variant, str) or experiment.variant(variant) is None:
            raise InvalidExperiment(
                f"'variant' must be one of {', '.join(v.name for v in experiment.variants)}")
        after = {"status": STOPPED, "default_variant": variant}
        if reason:
            after["reason"] = reason
        self._store.update_experiment(
            experiment, actor=actor, action=action,
            before={"status": experiment.status, "default_variant": experiment.default_variant},
            after=after, columns={"status": STOPPED, "default_variant": variant})
        return self._changed(name)

    def _changed(self, name: str) -> dict:
        self._catalog.changed()  # every worker of this host sees it on its next request
        return self.get(name)

