"""The /predict use case: experiment → sticky group → that group's model → prediction."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from .sticky import StickyAssigner
from .errors import ServiceUnavailable
from .experiments import ExperimentCatalog
from .model_registry import ModelRegistry
from .payloads import PredictRequest, feature_row


@dataclass(frozen=True)
class PredictionResult:
    request_id: str
    experiment: str
    group: str
    model_name: str
    model_version: str
    prediction: object
    score: float | None
    model_latency_ms: float

    def to_dict(self) -> dict:
        return {
            "request_id": self.request_id,
            "experiment": self.experiment,
            "group": self.group,
            "model": {"name": self.model_name, "version": self.model_version},
            "prediction": self.prediction,
            "score": self.score,
        }


class PredictionService:
    def __init__(self, catalog: ExperimentCatalog, assigner: StickyAssigner,
                 registry: ModelRegistry, default_experiment: str):
        self._catalog = catalog
        self._assigner = assigner
        self._registry = registry
        self._default_experiment = default_experiment

    def predict(self, request: PredictRequest) -> PredictionResult:
        experiment = self._catalog.get(request.experiment or self._default_experiment)
        # Validate against the control's features before anything is assigned or stored.
        row = feature_row(request.features, self._model(experiment.control.model_key)
                          .spec.feature_names)
        if experiment.is_running:
            variant = experiment.variant(self._assigner.assign(experiment, request.uid))
        else:
            variant = experiment.serving_variant
        model = self._model(variant.model_key)
        started = time.perf_counter()
        prediction, score = model.predict(row)
        model_ms = (time.perf_counter() - started) * 1000
        return PredictionResult(
            request_id=uuid.uuid4().hex, experiment=experiment.name, group=variant.name,
            model_name=model.spec.name, model_version=model.spec.version,
            prediction=prediction, score=score, model_latency_ms=model_ms,
        )

    def _model(self, key: str):
        model = self._registry.get(key)
        if model is None:
            raise ServiceUnavailable(f"model {key} is not loaded in this process")
        return model
