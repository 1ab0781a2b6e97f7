"""Models come only from the manifest in MODELS_DIR, and are loaded only after their sha256 matches.

A joblib file is a pickle: loading one runs code. The manifest is the allow-list, and the
bytes that were hashed are the bytes that are unpickled (no window to swap the file).
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import joblib
import numpy as np
import sklearn

from ml_api.domain.models import ModelSpec
from ml_api.errors import ModelIntegrityError
from ml_api.serving.fast_proba import fast_proba

MANIFEST_NAME = "manifest.json"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(models_dir: Path) -> list[ModelSpec]:
    manifest = Path(models_dir) / MANIFEST_NAME
    if not manifest.is_file():
        raise ModelIntegrityError(
            f"no model manifest at {manifest}; train or register a model first")
    try:
        entries = json.loads(manifest.read_text())["models"]
        return [
            ModelSpec(**{**entry, "feature_names": tuple(entry["feature_names"])})
            for entry in entries
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(f"{manifest} is not a valid model manifest: {exc}") from exc


def write_manifest(models_dir: Path, specs: Sequence[ModelSpec]) -> None:
    manifest = Path(models_dir) / MANIFEST_NAME
    payload = {"models": [spec.to_dict() for spec in specs]}
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(manifest)


def read_verified_bytes(models_dir: Path, spec: ModelSpec) -> bytes:
    """The artifact's bytes, or ModelIntegrityError when missing or not matching the manifest."""
    path = Path(models_dir) / spec.path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(f"model {spec.key}: cannot read {path}: {exc}") from exc
    actual = sha256_of(data)
    if not hmac.compare_digest(actual, spec.sha256):
        raise ModelIntegrityError(
            f"model {spec.key}: sha256 of {path} is {actual}, manifest says {spec.sha256}; "
            "refusing to load an unverified artifact"
        )
    return data


def verify_all(models_dir: Path) -> list[ModelSpec]:
    """Check every artifact in the manifest without unpickling anything."""
    specs = read_manifest(models_dir)
    for spec in specs:
        read_verified_bytes(models_dir, spec)
    return specs


class LoadedModel:
    """A verified estimator with a single-row predict that returns plain Python values."""

    def __init__(self, spec: ModelSpec, estimator):
        self.spec = spec
        self.estimator = estimator
        self.n_features = len(spec.feature_names)
        self._has_proba = hasattr(estimator, "predict_proba")
        self._fast_proba = fast_proba(estimator, self.n_features)
        classes = getattr(estimator, "classes_", None)
        self._classes = [c.item() if hasattr(c, "item") else c for c in classes] if (
            classes is not None
        ) else None
        # A score that a 0/1 label can be judged against (log-loss, Brier, AUC).
        self.binary = self._has_proba and self._classes is not None and len(self._classes) == 2

    def predict(self, row: Sequence[float]) -> tuple[object, float | None]:
        """(prediction, score): score is the positive-class probability for a binary classifier,
        the predicted class's probability for a multi-class one, None without predict_proba."""
        if self._fast_proba is not None and self._classes is not None:
            positive = self._fast_proba(row)
            # argmax semantics: a tie (0.5) goes to the first class, as predict() does.
            return self._classes[1 if positive > 0.5 else 0], positive
        x = np.asarray(row, dtype=np.float64).reshape(1, -1)
        # Inputs are validated (count, finiteness) before they get here; skipping sklearn's own
        # checks saves a share of a single-row call.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            if self._has_proba and self._classes is not None:
                proba = self.estimator.predict_proba(x)[0]
                best = int(proba.argmax())
                score = proba[1] if len(proba) == 2 else proba[best]
                return self._classes[best], float(score)
            value = self.estimator.predict(x)[0]
        return (value.item() if hasattr(value, "item") else value), None


class ModelRegistry:
    """All models of the manifest, verified and loaded, by key "name@version"."""

    def __init__(self, models: dict[str, LoadedModel]):
        self._models = models

    @classmethod
    def load(cls, models_dir: Path) -> "ModelRegistry":
        models = {}
        for spec in read_manifest(models_dir):
            data = read_verified_bytes(models_dir, spec)
            models[spec.key] = LoadedModel(spec, joblib.load(io.BytesIO(data)))
        return cls(models)

    def get(self, key: str) -> LoadedModel | None:
        return self._models.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)

    def specs(self) -> list[ModelSpec]:
        return [m.spec for m in self._models.values()]


def register_model(
    models_dir: Path,
    artifact: Path,
    name: str,
    version: str,
    feature_names: Sequence[str],
    metrics: dict | None = None,
    description: str = "",
    trained_at: str | None = None,
) -> ModelSpec:
    """Copy an artifact into models_dir (if elsewhere) and add it to the manifest."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    artifact = Path(artifact)
    target = models_dir / artifact.name
    if artifact.resolve() != target.resolve():
        shutil.copyfile(artifact, target)
    spec = ModelSpec(
        name=name,
        version=str(version),
        path=target.name,
        sha256=sha256_of(target.read_bytes()),
        feature_names=tuple(feature_names),
        trained_at=trained_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        metrics=metrics or {},
        description=description,
    )
    existing = read_manifest(models_dir) if (models_dir / MANIFEST_NAME).is_file() else []
    specs = [s for s in existing if s.key != spec.key]
    write_manifest(models_dir, [*specs, spec])
    return spec
