"""Experiment administration: validated specs, the status machine, promote/rollback, audit.

Used by the admin HTTP routes and the CLI alike; no Flask here. Every change is a
compare-and-set on the experiment's version with its audit entry in the same transaction.
"""
from __future__ import annotations

from typing import Callable

from ml_api.domain.experiments import (
    DEFAULT_SETTINGS,
    DRAFT,
    PAUSED,
    RUNNING,
    STOPPED,
    Experiment,
    Variant,
)
from ml_api.domain.models import Models
from ml_api.errors import (
    DuplicateExperiment,
    IllegalTransition,
    InvalidExperiment,
    UnknownExperiment,
)
from ml_api.experiments.catalog import ExperimentCatalog
from ml_api.experiments.reading import ResultsReader
from ml_api.experiments.specs import (
    PATCH_KEYS,
    TEST_KEYS,
    parse_experiment_spec,
    parse_weights,
    require_object,
    validate_canary,
    validate_settings,
)
from ml_api.records.engine import utcnow
from ml_api.records.experiment_store import ExperimentStore
from ml_api.records.exposures import ExposureStore
from ml_api.records.labels import LabelStore
from ml_api.records.looks import LookStore
from ml_api.records.shadow import ShadowStore
from ml_api.records.snapshots import SnapshotStore

# action -> (statuses it may start from, status it leads to)
TRANSITIONS = {
    "start": ({DRAFT, PAUSED}, RUNNING),
    "pause": ({RUNNING}, PAUSED),
    "stop": ({RUNNING, PAUSED}, STOPPED),
}


class ExperimentAdmin:
    """The admin use cases behind the admin API and the CLI: create, change, start, pause,
    stop, promote, read results and the audit log."""

    def __init__(self, store: ExperimentStore, exposures: ExposureStore,
                 shadow_records: ShadowStore, registry: Models,
                 catalog: ExperimentCatalog, on_action: Callable[..., None] | None = None,
                 snapshots: SnapshotStore | None = None, labels: LabelStore | None = None,
                 looks: LookStore | None = None):
        """`on_action(experiment=, action=, actor=, reason=, ...)` hears of every change;
        `snapshots` are the counters over time that `history` reads; `labels` the true
        labels that model-quality results read; `looks` the stored sequential looks."""
        self._store = store
        self._registry = registry
        self._catalog = catalog
        self._on_action = on_action
        self._reader = ResultsReader(exposures, shadow_records, labels, snapshots, looks)

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

    def results(self, name: str, model_quality: bool = True) -> dict:
        """Everything the results page shows; `model_quality=False` skips reading labels."""
        return self._reader.results(self._load(name), model_quality)

    def results_and_start(self, name: str) -> tuple[dict, str | None]:
        """The results and the experiment's start (ISO 8601; None before it starts), from one
        load of the experiment."""
        experiment = self._load(name)
        since = experiment.started_at
        return self._reader.results(experiment), since.isoformat() if since else None

    def take_look(self, name: str, at) -> dict:
        """Store the comparisons' decisive tests as the look at `at`; the results with it."""
        return self._reader.take_look(self._load(name), at)

    def history(self, name: str) -> list[dict]:
        """Each challenger's effect and its always-valid interval at each counter snapshot."""
        return self._reader.history(self._load(name))

    # --- changing --------------------------------------------------------------------------

    def create(self, body, actor: str) -> dict:
        spec = parse_experiment_spec(body, self._registry)
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
        return self._changed(spec["name"], "create", actor)

    def patch(self, name: str, body, actor: str) -> dict:
        experiment = self._load(name)
        body = require_object(body)
        unknown = sorted(set(body) - PATCH_KEYS)
        if unknown:
            raise InvalidExperiment(f"these fields cannot be changed: {', '.join(unknown)}")
        fixed = sorted(set(body) & TEST_KEYS) if experiment.status != DRAFT else []
        if fixed:
            raise InvalidExperiment("these settings define the test and are fixed once the "
                                    f"experiment has started: {', '.join(fixed)}")
        known = {v.name for v in experiment.variants}
        weights = {}
        if "weights" in body:
            if not isinstance(body["weights"], dict):
                raise InvalidExperiment("'weights' must be an object of variant: weight")
            weights = parse_weights([{"name": k, "weight": w} for k, w in body["weights"].items()],
                               known)
        if "variants" in body:
            if not isinstance(body["variants"], list):
                raise InvalidExperiment("'variants' must be a list of {name, weight}")
            weights.update(parse_weights(body["variants"], known))
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
        return self._changed(name, "update", actor)

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
        return self._changed(name, action, actor, reason)

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
        return self._changed(name, "canary_step", actor, f"challenger at {percent}%")

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
        return self._changed(name, action, actor, reason, variant=variant)

    def record_decision(self, name: str, decision: dict, at, actor: str) -> dict:
        """Keep a decision once reached: the results show it from now on, whatever later
        looks say, until reverse_decision records why not."""
        experiment = self._load(name)
        reached = {**decision, "reached_at": at.isoformat()}
        self._store.update_experiment(
            experiment, actor=actor, action="decision", before={"decision": None},
            after={"decision": reached},
            columns={"config": {**experiment.config, "decision": reached}})
        return self._changed(name, "decision", actor, decision["message"])

    def reverse_decision(self, name: str, reason: str, actor: str) -> dict:
        """Withdraw a reached decision, for an explicit reason the audit log keeps (a
        sample-ratio mismatch, a guardrail)."""
        experiment = self._load(name)
        config = {k: v for k, v in experiment.config.items() if k != "decision"}
        self._store.update_experiment(
            experiment, actor=actor, action="decision_reversed",
            before={"decision": experiment.config.get("decision")},
            after={"decision": None, "reason": reason}, columns={"config": config})
        return self._changed(name, "decision_reversed", actor, reason)

    def _changed(self, name: str, action: str, actor: str, reason: str | None = None,
                 **details) -> dict:
        self._catalog.changed()  # every worker of this host sees it on its next request
        if self._on_action is not None:  # the audit log holds it durably; this tells Kibana
            self._on_action(experiment=name, action=action, actor=actor, reason=reason,
                            **details)
        return self.get(name)

