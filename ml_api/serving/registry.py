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

from ml_api.domain.models import ModelSpec
from ml_api.errors import ModelIntegrityError
from ml_api.serving.loaded_model import LoadedModel

MANIFEST_NAME = "manifest.json"


def reference_of(rows) -> dict:
    """The feature means and standard deviations of training rows, for the manifest."""
    rows = np.asarray(rows, dtype=np.float64)
    return {"mean": rows.mean(axis=0).tolist(), "std": rows.std(axis=0).tolist()}


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


class ModelRegistry:
    """All models of the manifest, verified and loaded, by key "name@version"."""

    def __init__(self, models: dict[str, LoadedModel]):
        self._models = models
        # Rows with every |value| up to this are refused by no model.
        self.safe_magnitude = min((m.safe_magnitude for m in models.values()), default=0.0)

    @classmethod
    def load(cls, models_dir: Path) -> "ModelRegistry":
        models = {}
        for spec in read_manifest(models_dir):
            data = read_verified_bytes(models_dir, spec)
            models[spec.key] = _loaded(spec, data)
        return cls(models)

    def get(self, key: str) -> LoadedModel | None:
        return self._models.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)

    def specs(self) -> list[ModelSpec]:
        return [m.spec for m in self._models.values()]


# Models this process has loaded and gated, by their manifest entry: the same verified bytes
# and reference give the same model, so an app built again in one process (the tests, the
# CLI) neither unpickles nor gates them twice. Entries are immutable once built.
_LOADED: dict[str, LoadedModel] = {}


def _loaded(spec: ModelSpec, data: bytes) -> LoadedModel:
    """The LoadedModel of these verified bytes under this manifest entry, built once."""
    key = json.dumps(spec.to_dict(), sort_keys=True)
    if key not in _LOADED:
        _LOADED[key] = LoadedModel(spec, joblib.load(io.BytesIO(data)))
    return _LOADED[key]


def register_model(
    models_dir: Path,
    artifact: Path,
    name: str,
    version: str,
    feature_names: Sequence[str],
    metrics: dict | None = None,
    description: str = "",
    trained_at: str | None = None,
    reference: dict | None = None,
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
        reference=reference or {},
    )
    existing = read_manifest(models_dir) if (models_dir / MANIFEST_NAME).is_file() else []
    specs = [s for s in existing if s.key != spec.key]
    write_manifest(models_dir, [*specs, spec])
    return spec
