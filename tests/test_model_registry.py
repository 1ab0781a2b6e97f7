"""Models load only through the manifest and only when their sha256 matches."""
import json
import pickle

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from ml_api.cli import main as cli_main
from ml_api.errors import ModelIntegrityError
from ml_api.records.engine import make_engine
from ml_api.records.experiment_store import ExperimentStore
from ml_api.serving.registry import (
    ModelRegistry,
    read_manifest,
    register_model,
    sha256_of,
    verify_all,
)
from ml_api.serving.training import demo_dataset
from tests.helpers import FEATURES


def test_manifest_records_each_models_checksum_features_and_held_out_scores(models_dir):
    specs = {s.key: s for s in read_manifest(models_dir)}
    assert set(specs) == {"logreg@1", "gboost@1"}
    for spec in specs.values():
        assert spec.sha256 == sha256_of((models_dir / spec.path).read_bytes())
        assert len(spec.feature_names) == 10 and spec.trained_at
        assert 0.85 < spec.metrics["accuracy"] <= 1 and 0.9 < spec.metrics["roc_auc"] <= 1


def test_registry_predicts_like_the_estimator(models_dir):
    registry = ModelRegistry.load(models_dir)
    for key in ("logreg@1", "gboost@1"):
        model = registry.get(key)
        prediction, score = model.predict(FEATURES)
        assert score == pytest.approx(model.estimator.predict_proba([FEATURES])[0][1])
        assert prediction == model.estimator.predict([FEATURES])[0]


def test_tampered_artifact_is_never_unpickled(tmp_path, monkeypatch):
    x, y, names = demo_dataset()
    artifact = tmp_path / "src.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), artifact)
    models = tmp_path / "models"
    register_model(models, artifact, name="m", version="1", feature_names=names)
    (models / "src.joblib").write_bytes(pickle.dumps({"swapped": True}))
    loaded = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: loaded.append(a))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        ModelRegistry.load(models)
    assert loaded == []


def test_missing_manifest_or_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(ModelIntegrityError, match="no model manifest"):
        verify_all(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [{
        "name": "ghost", "version": "1", "path": "ghost.joblib", "sha256": "0" * 64,
        "feature_names": ["a"]}]}))
    with pytest.raises(ModelIntegrityError, match="cannot read"):
        verify_all(tmp_path)


def test_bring_your_own_model_with_the_cli(tmp_path, monkeypatch, capsys):
    x, y, names = demo_dataset()
    artifact = tmp_path / "challenger-2.joblib"
    joblib.dump(LogisticRegression(C=0.1, max_iter=500).fit(x, y), artifact)
    models = tmp_path / "models"
    database = tmp_path / "db.sqlite3"
    monkeypatch.setenv("MODELS_DIR", str(models))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    assert cli_main(["register-model", "--artifact", str(artifact), "--name", "challenger",
                     "--version", "2", "--features", ",".join(names),
                     "--metrics", '{"accuracy": 0.9}']) == 0
    assert cli_main(["check-models"]) == 0
    assert cli_main(["init-db"]) == 0
    rows = ExperimentStore(make_engine(f"sqlite:///{database}")).registered_models()
    assert [(r["name"], r["version"], r["metrics"]) for r in rows] == \
        [("challenger", "2", {"accuracy": 0.9})]
    (models / "challenger-2.joblib").write_bytes(b"not the registered bytes")
    assert cli_main(["check-models"]) == 2
    assert "refusing to load" in capsys.readouterr().err


def test_registering_scalers_without_std_or_mean_leaves_every_model_serving(tmp_path,
                                                                           monkeypatch):
    """A pipeline whose StandardScaler keeps no scale_ (or no mean) once stopped every model
    of the manifest loading; registered with the CLI, it serves, and so does every other."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ml_api.serving.training import train_demo_models

    x, y, names = demo_dataset()
    models = tmp_path / "models"
    train_demo_models(models)
    reference = tmp_path / "training.csv"
    reference.write_text(",".join(names) + "\n"
                         + "\n".join(",".join(map(repr, row)) for row in x.tolist()) + "\n")
    monkeypatch.setenv("MODELS_DIR", str(models))
    options = {"no-std": {"with_std": False}, "neither": {"with_mean": False, "with_std": False}}
    for name, scaler in options.items():
        artifact = tmp_path / f"{name}.joblib"
        joblib.dump(make_pipeline(StandardScaler(**scaler), LogisticRegression(
            solver="newton-cholesky")).fit(x, y), artifact)
        assert cli_main(["register-model", "--artifact", str(artifact), "--name", name,
                         "--version", "1", "--features", ",".join(names),
                         "--reference-csv", str(reference)]) == 0
    registry = ModelRegistry.load(models)
    assert {s.key for s in registry.specs()} == {"logreg@1", "gboost@1", "no-std@1",
                                                   "neither@1"}
    assert registry.get("no-std@1").spec.reference["mean"] == \
        pytest.approx(x.mean(axis=0).tolist())
    for spec in registry.specs():
        model = registry.get(spec.key)
        for row in x[::50]:
            prediction, score = model.predict(row.tolist())
            assert prediction == model.estimator.predict([row])[0]
            assert abs(score - model.estimator.predict_proba([row])[0, 1]) <= \
                model.tolerance(row.tolist())
