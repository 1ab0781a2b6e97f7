"""Models as the layers above serving see them: the manifest's spec of an artifact, and the
little the experiments ask of a loaded model (its spec and a single-row predict)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class ModelSpec:
    """A manifest entry: the artifact's name, version, path, sha256 and feature names."""

    name: str
    version: str
    path: str
    sha256: str
    feature_names: tuple[str, ...]
    trained_at: str = ""
    metrics: dict = field(default_factory=dict)
    description: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["feature_names"] = list(self.feature_names)
        return data


class Model(Protocol):
    """A verified, loaded model (serving's LoadedModel)."""

    spec: ModelSpec

    def predict(self, row: Sequence[float]) -> tuple[object, float | None]: ...


class Models(Protocol):
    """The loaded models by key "name@version" (serving's ModelRegistry)."""

    def get(self, key: str) -> Model | None: ...
