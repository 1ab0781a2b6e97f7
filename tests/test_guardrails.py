"""Guardrails: an always-valid test of harm on any metric, run on every experiment, and the
supervisor's rollback when one is breached."""
from datetime import timedelta

import numpy as np
import pytest

from ml_api.domain.experiments import Experiment, Variant
from ml_api.errors import InvalidExperiment
from ml_api.stats import inference as st
from ml_api.stats.guardrails import guardrail_checks
from ml_api.stats.results import MetricSums
from ml_api.validation import FeedbackRequest, PredictRequest
from tests.helpers import FEATURES

GUARD = [{"metric": "cancellation", "worse": "higher", "tolerance": 0.0}]


def experiment(guardrails=GUARD):
    return Experiment(id=1, name="g", salt="g", status="running",
                      variants=(Variant("a", "m@1", 1), Variant("b", "m@1", 1)),
                      config={"guardrails": guardrails, "alpha": 0.05})


def metric_sums(values: np.ndarray) -> MetricSums:
    return MetricSums(users=int((values > 0).sum()), events=len(values),
                      total=float(values.sum()), total_sq=float((values * values).sum()))


def test_the_harm_and_its_interval_come_from_the_raw_values():
    rng = np.random.default_rng(1)
    a, b = rng.binomial(1, 0.05, 800).astype(float), rng.binomial(1, 0.12, 700).astype(float)
    [check] = guardrail_checks(experiment(), {"a": 800, "b": 700},
                               {"cancellation": {"a": metric_sums(a), "b": metric_sums(b)}})
    assert check["harm"] == pytest.approx(b.mean() - a.mean())
    variance = a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)
    _, low, high = st.msprt(b.mean() - a.mean(), variance, 0.02, 0.05)  # tau: the mde
    assert check["harm_ci"] == pytest.approx([low, high])
    assert check["breached"] == (low > 0)
    lower_is_worse = experiment([{**GUARD[0], "worse": "lower"}])
    [flipped] = guardrail_checks(lower_is_worse, {"a": 800, "b": 700},
                                 {"cancellation": {"a": metric_sums(a), "b": metric_sums(b)}})
    assert flipped["harm"] == pytest.approx(-check["harm"]) and not flipped["breached"]


def breach_rate(harm: float, tolerance: float, experiments=200, users=4000, look_every=100,
                seed=5) -> float:
    """Share of simulated experiments whose guardrail is ever breached, looked at every
    `look_every` users per arm: metric values N(0, 1) in the control, N(harm, 1) in b."""
    rng = np.random.default_rng(seed)
    guarded = experiment([{"metric": "m", "worse": "higher", "tolerance": tolerance}])
    breached = 0
    for _ in range(experiments):
        a, b = rng.normal(0, 1, users), rng.normal(harm, 1, users)
        for n in range(look_every, users + 1, look_every):
            [check] = guardrail_checks(guarded, {"a": n, "b": n},
                                       {"m": {"a": metric_sums(a[:n]), "b": metric_sums(b[:n])}})
            if check["breached"]:
                breached += 1
                break
    return breached / experiments


def test_a_guardrail_that_holds_is_breached_at_most_alpha_under_continuous_monitoring():
    assert breach_rate(harm=0.0, tolerance=0.0) <= 0.05
    assert breach_rate(harm=0.3, tolerance=0.05) > 0.9  # and a real harm is caught


def test_settings_refuse_a_malformed_guardrail(services):
    for bad in ([{"metric": "x", "worse": "sideways"}], {"metric": "x"},
                [{"metric": "bad name!", "worse": "higher"}],
                [{"metric": "x", "worse": "higher", "tolerance": -1}]):
        with pytest.raises(InvalidExperiment):
            services.admin.create({"name": "bad", "guardrails": bad, "variants": [
                {"name": "a", "model": "logreg@1"}, {"name": "b", "model": "gboost@1"}]}, "t")


def test_the_supervisor_rolls_back_an_experiment_that_breaches_a_guardrail(services):
    from ml_api.experiments.supervisor import ExperimentSupervisor
    from ml_api.records.engine import utcnow

    services.admin.create({"name": "guarded", "guardrails": GUARD, "variants": [
        {"name": "a", "model": "logreg@1"}, {"name": "b", "model": "gboost@1"}]}, "t")
    services.admin.transition("guarded", "start", "t")
    now = utcnow()
    supervisor = ExperimentSupervisor(services.store, services.exposures, services.admin,
                                      services.traffic, lambda: now)
    rng = np.random.default_rng(2)
    for i in range(300):
        uid = f"g{i}"
        group = services.prediction.predict(PredictRequest(uid, FEATURES, "guarded")).group
        if rng.random() < (0.02 if group == "a" else 0.30):
            services.outcomes.record(FeedbackRequest(uid, "guarded", "cancellation", 1, None))
        if i == 20:  # too early to tell: nothing happens
            assert supervisor.tick() == []
    [action] = supervisor.tick()
    assert action.startswith("guarded: rolled back: guardrail cancellation crossed: b is worse")
    described = services.admin.get("guarded")
    assert described["status"] == "stopped" and described["serving_variant"] == "a"
    entry = services.admin.audit("guarded")[-1]
    assert entry["action"] == "guardrail_rollback" and entry["actor"] == "supervisor"
    assert "tolerance 0" in entry["after"]["reason"]
    now += timedelta(minutes=1)
    assert supervisor.tick() == []  # stopped: nothing more to do
