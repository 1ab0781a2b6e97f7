"""The /predict use case: experiment → sticky group → that group's model → prediction."""
from __future__ import annotations

import logging
import math
import random
import time
from typing import NamedTuple, Sequence

from ml_api.assignment.sticky import StickyAssigner
from ml_api.errors import (
    ApiError,
    AssignmentUnconfirmed,
    BackendUnavailable,
    InvalidFeatures,
    ModelFailure,
    ServiceUnavailable,
    with_event_fields,
)
from ml_api.experiments.catalog import ExperimentCatalog
from ml_api.experiments.shadow import ShadowRunner
from ml_api.experiments.traffic import TrafficRecorder
from ml_api.serving.label_tokens import LabelSigner
from ml_api.serving.registry import ModelRegistry
from ml_api.validation import PredictRequest

log = logging.getLogger(__name__)


def feature_row(features: list | dict, names: Sequence[str]) -> list[float]:
    """The features in the model's order, or InvalidFeatures (wrong count, names, non-finite)."""
    if isinstance(features, dict):
        missing = [n for n in names if n not in features]
        known = set(names)
        unknown = [k for k in features if k not in known]
        if missing or unknown:
            raise InvalidFeatures("feature names do not match the model",
                                  details={"missing": missing, "unknown": unknown[:20]})
        row = [features[n] for n in names]
    else:
        if len(features) != len(names):
            raise InvalidFeatures(f"expected {len(names)} features, got {len(features)}",
                                  details={"feature_names": list(names)})
        row = features
    try:
        row = list(map(float, row))
    except OverflowError:  # an integer literal too large for a double
        row = [math.inf]
    # Only a non-finite sum (a NaN, an infinity, or an overflow) needs a look at each value.
    if not math.isfinite(sum(row)) and not all(map(math.isfinite, row)):
        raise InvalidFeatures("features must be finite numbers (no NaN or Infinity)")
    return row


class PredictionResult(NamedTuple):
    """What /predict answers. A NamedTuple, built once per request: cheaper than a frozen
    dataclass, whose every field goes through object.__setattr__."""

    request_id: str
    experiment: str
    group: str
    model_name: str
    model_version: str
    prediction: object
    score: float | None
    model_latency_ms: float
    in_experiment: bool = True  # False: not running, everyone gets the serving variant
    first_exposure: bool = False  # this request gave the uid its group (for the event only)
    label_token: str | None = None  # sent back to /feedback with the true label

    def to_dict(self) -> dict:
        return {
            "request_id": self.request_id,
            "experiment": self.experiment,
            "group": self.group,
            "in_experiment": self.in_experiment,
            "model": {"name": self.model_name, "version": self.model_version},
            "prediction": self.prediction,
            "score": self.score,
            "label_token": self.label_token,
        }


class PredictionService:
    """The /predict use case: the experiment, the uid's sticky group, that group's model,
    the prediction, and the traffic and shadow bookkeeping."""

    def __init__(self, catalog: ExperimentCatalog, assigner: StickyAssigner,
                 registry: ModelRegistry, default_experiment: str, shadow: ShadowRunner,
                 traffic: TrafficRecorder, labels: LabelSigner):
        self._catalog = catalog
        self._assigner = assigner
        self._registry = registry
        self._default_experiment = default_experiment
        self._shadow = shadow
        self._traffic = traffic
        self._labels = labels

    def predict(self, request: PredictRequest) -> PredictionResult:
        """The prediction for this request. An error carries what its event can say
        (`event_fields`): the experiment, and the group and model once they were chosen."""
        try:
            return self._predict(request)
        except (ApiError, BackendUnavailable) as exc:
            if not hasattr(exc, "event_fields"):  # failed before a group was chosen
                with_event_fields(exc, experiment=request.experiment or self._default_experiment,
                                  group=None)
            raise

    def _predict(self, request: PredictRequest) -> PredictionResult:
        started = time.perf_counter()
        experiment = self._catalog.get(request.experiment or self._default_experiment)
        running, first = experiment.is_running, False
        # Validate against the control's features before anything is assigned or stored.
        row = feature_row(request.features, self._model(experiment.control.model_key,
                                                        experiment.name).spec.feature_names)
        magnitude = max(map(abs, row))
        screened = {}
        if running:
            # Every model the uid may get is first asked whether it refuses the row: a
            # refused row leaves nothing stored, not even the exposure.
            screened = self._screen(experiment, row, magnitude)
            try:
                name, first = self._assigner.assign(experiment, request.uid, request.covariate)
                variant = experiment.variant(name)
            except AssignmentUnconfirmed:  # served as outside the experiment; nothing recorded
                variant, running = experiment.serving_variant, False
        else:
            variant = experiment.serving_variant
        model = self._model(variant.model_key, experiment.name, variant.name)
        answer, spent = screened.get(variant.model_key, (None, 0.0))
        model_started = time.perf_counter() - spent  # a screened answer took its time then
        try:
            prediction, score = answer if answer is not None else model.predict(row, magnitude)
        except InvalidFeatures as exc:  # the model itself refuses the row: a client error
            raise with_event_fields(exc, experiment=experiment.name, group=variant.name,
                                    model_name=model.spec.name,
                                    model_version=model.spec.version)
        except Exception as exc:  # a model bug must not look like a client error
            log.exception("model %s failed", model.spec.key)
            if running:
                self._traffic.record(experiment.id, variant.name,
                                     (time.perf_counter() - started) * 1000, error=True)
            raise with_event_fields(
                ModelFailure(f"model {model.spec.key} failed to predict"),
                experiment=experiment.name, group=variant.name, model_name=model.spec.name,
                model_version=model.spec.version) from exc
        done = time.perf_counter()
        spec = model.spec
        # 128 random bits without a syscall (random is reseeded in every forked worker).
        request_id = f"{random.getrandbits(128):032x}"
        token = (self._labels.issue(experiment.id, experiment.name, variant.name, score,
                                     request_id)
                 if running and model.binary else None)
        result = PredictionResult(
            request_id, experiment.name, variant.name, spec.name, spec.version, prediction,
            score, (done - model_started) * 1000, running, first, token)
        if running:
            # Latency per variant for the canary guards and the results page.
            self._traffic.record(experiment.id, variant.name, (done - started) * 1000,
                                 error=False)
            if experiment.strategy == "shadow":
                self._shadow.submit(experiment, request.uid, result.request_id, row, {
                    "primary_variant": variant.name, "primary_prediction": prediction,
                    "primary_score": score, "primary_ms": result.model_latency_ms})
        return result

    def _screen(self, experiment, row: list[float], magnitude: float) -> dict:
        """Each variant's model that may refuse this row is asked before anything is stored:
        InvalidFeatures when one refuses it. Their answers, with the seconds each took, by
        model key, so that the assigned variant's model is not asked twice."""
        answers: dict = {}
        if magnitude <= self._registry.safe_magnitude:
            return answers
        for candidate in experiment.variants:
            key = candidate.model_key
            if key in answers:
                continue
            model = self._model(key, experiment.name)
            started = time.perf_counter()
            try:
                answer = model.check(row, magnitude)
            except InvalidFeatures:
                raise
            except Exception:  # noqa: BLE001
                # A model bug, not a refusal: the request that model serves asks it again
                # and reports the failure.
                continue
            if answer is not None:
                answers[key] = (answer, time.perf_counter() - started)
        return answers

    def _model(self, key: str, experiment: str | None = None, group: str | None = None):
        model = self._registry.get(key)
        if model is None:
            raise with_event_fields(
                ServiceUnavailable(f"model {key} is not loaded in this process"),
                experiment=experiment, group=group)
        return model
