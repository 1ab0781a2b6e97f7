"""The command line does what the admin API does, on the same audit log."""
import json

import pytest

from ml_api.cli import main
from tests.helpers import FEATURES


@pytest.fixture
def cli_env(embedded_settings, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(embedded_settings.models_dir))
    monkeypatch.setenv("DATABASE_URL", embedded_settings.effective_database_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("USER", "alice")
    return embedded_settings


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip().startswith(("{", "[")) else out), err


def test_experiment_lifecycle_from_the_terminal(cli_env, capsys, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "cli-test", "variants": [
        {"name": "a", "model": "logreg@1", "weight": 1},
        {"name": "b", "model": "gboost@1", "weight": 1}]}))
    code, created, _ = run(capsys, "experiments", "create", "--file", str(spec))
    assert code == 0 and created["status"] == "draft"
    assert run(capsys, "experiments", "start", "cli-test")[1]["status"] == "running"
    code, _, err = run(capsys, "experiments", "start", "cli-test")
    assert code == 1 and "illegal_transition" in err
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"weights": {"a": 3, "b": 1}}))
    assert [v["weight"] for v in run(capsys, "experiments", "patch", "cli-test", "--file",
                                     str(weights))[1]["variants"]] == [3, 1]
    assert run(capsys, "experiments", "promote", "cli-test", "b")[1]["serving_variant"] == "b"
    names = [e["name"] for e in run(capsys, "experiments", "list")[1]]
    assert names == ["cli-test", "demo"]
    audit = run(capsys, "experiments", "audit", "cli-test")[1]
    assert [e["action"] for e in audit] == ["create", "start", "update", "promote"]
    assert {e["actor"] for e in audit} == {"cli:alice"}
    assert run(capsys, "experiments", "results", "cli-test")[1]["decision"]["outcome"]


def test_reconcile_and_aa_study(cli_env, capsys):
    from ml_api import create_app
    from ml_api.validation import FeedbackRequest, PredictRequest
    services = create_app(cli_env).extensions["ml_api"]
    for i in range(30):
        services.prediction.predict(PredictRequest(f"r{i}", FEATURES, None))
        if i % 3 == 0:
            services.outcomes.record(FeedbackRequest(f"r{i}", None, "conversion", 1, None))
    code, report, _ = run(capsys, "reconcile", "demo")
    assert code == 0 and report["consistent"]
    assert sum(report["raw"]["exposures"].values()) == 30
    code, study, _ = run(capsys, "aa-study", "--experiments", "200", "--users", "2000")
    assert code == 0 and study["sequential_false_positive_rate"] <= 0.05
