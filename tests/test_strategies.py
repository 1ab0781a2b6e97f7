"""Bandits, shadow and canary: the pure weight functions, then each strategy end to end on the
real Redis + MariaDB (and the embedded default) through the services."""
import json
from datetime import timedelta

import numpy as np
import pytest
from scipy import stats

from ml_api import create_app
from ml_api.experiments.strategies import epsilon_greedy_weights, thompson_weights, with_floor
from ml_api.validation import FeedbackRequest, PredictRequest
from tests.helpers import FEATURES

TWO = [{"name": "control", "model": "logreg@1", "weight": 1},
       {"name": "challenger", "model": "gboost@1", "weight": 1}]


def test_floor_keeps_every_arm_at_least_min_share():
    assert with_floor([1.0, 0.0, 0.0], 0.1) == pytest.approx([0.8, 0.1, 0.1])
    assert sum(with_floor([0.2, 0.8], 0.05)) == pytest.approx(1)


def test_epsilon_greedy_weights():
    weights = epsilon_greedy_weights([10, 30], [100, 100], epsilon=0.2, min_share=0.0)
    assert weights == pytest.approx([0.1, 0.9])
    tie = epsilon_greedy_weights([0, 0], [0, 0], epsilon=0.2, min_share=0.0)
    assert tie == pytest.approx([0.5, 0.5])


def test_thompson_weights_are_the_probability_each_arm_is_best():
    successes, trials = [30, 45], [300, 300]
    weights = thompson_weights(successes, trials, min_share=0.0, draws=200_000)
    rng = np.random.default_rng(1)
    a = rng.beta(31, 271, 400_000)
    b = rng.beta(46, 256, 400_000)
    assert weights[1] == pytest.approx((b > a).mean(), abs=0.005)
    floored = thompson_weights(successes, trials, min_share=0.1)
    assert min(floored) >= 0.1 - 1e-12


@pytest.fixture
def services(any_settings):
    return create_app(any_settings).extensions["ml_api"]


def predict(services, uid, name):
    return services.prediction.predict(PredictRequest(uid, FEATURES, name)).group


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["epsilon_greedy", "thompson"])
def test_bandit_shifts_new_users_to_the_better_arm_and_keeps_assigned_ones(services, strategy):
    services.admin.create({"name": "bandit", "variants": TWO, "strategy": strategy,
                           "epsilon": 0.1, "min_share": 0.05}, "t")
    services.admin.transition("bandit", "start", "t")
    rng = np.random.default_rng(3)
    first = {}
    for i in range(400):
        uid = f"early-{i}"
        first[uid] = predict(services, uid, "bandit")
        rate = 0.05 if first[uid] == "control" else 0.30
        if rng.random() < rate:
            services.outcomes.record(FeedbackRequest(uid, "bandit", "conversion", 1, None))
    services.catalog.refresh()
    live = services.catalog.get("bandit")
    assert live.shares["challenger"] > 0.8 and live.shares["control"] >= 0.05 - 1e-9
    late = [predict(services, f"late-{i}", "bandit") for i in range(500)]
    share = late.count("challenger") / len(late)
    assert stats.binomtest(late.count("challenger"), 500, live.shares["challenger"]).pvalue \
        > 0.001 and share > 0.75
    # Sticky: an arm once assigned stays, whatever the bandit now prefers.
    assert {uid: predict(services, uid, "bandit") for uid in first} == first


def test_shadow_answers_with_the_primary_and_records_both(services, admin_headers):
    services.admin.create({"name": "shadowed", "variants": TWO, "strategy": "shadow"}, "t")
    services.admin.transition("shadowed", "start", "t")
    groups = {predict(services, f"s{i}", "shadowed") for i in range(60)}
    assert groups == {"control"}
    services.shadow.drain()
    rows = services.shadow_records.rows(services.catalog.get("shadowed").id)
    assert len(rows) == 60
    control = services.registry.get("logreg@1").estimator
    shadow = services.registry.get("gboost@1").estimator
    assert rows[0]["primary_score"] == pytest.approx(control.predict_proba([FEATURES])[0][1])
    assert rows[0]["shadow_score"] == pytest.approx(shadow.predict_proba([FEATURES])[0][1])
    report = services.admin.results("shadowed")["shadow"]
    assert report[0]["variant"] == "challenger" and report[0]["comparisons"] == 60
    agree = sum(r["primary_prediction"] == r["shadow_prediction"] for r in rows) / 60
    assert report[0]["agreement_rate"] == pytest.approx(agree)
    assert report[0]["shadow_mean_ms"] > 0 and report[0]["primary_mean_ms"] > 0


class Clock:
    """The supervisor's clock, moved forward by the test."""

    def __init__(self):
        from ml_api.records.engine import utcnow
        self.now = utcnow()

    def __call__(self):
        return self.now


def canary_services(services, **canary):
    from ml_api.experiments.supervisor import ExperimentSupervisor
    services.admin.create({"name": "canary", "variants": TWO, "strategy": "canary",
                           "canary": {"steps": [10, 50], "hold_seconds": 60,
                                      "min_requests": 5, **canary}}, "t")
    services.admin.transition("canary", "start", "t")
    clock = Clock()
    supervisor = ExperimentSupervisor(services.store, services.exposures, services.admin,
                                      services.traffic, clock)
    return supervisor, clock


def test_canary_ramps_after_the_hold_time_with_guards_holding(services):
    supervisor, clock = canary_services(services, max_p99_ms=5000, max_error_rate=0.5)
    assert services.catalog.get("canary").shares["challenger"] == pytest.approx(0.10)
    groups = [predict(services, f"c{i}", "canary") for i in range(300)]
    assert stats.binomtest(groups.count("challenger"), 300, 0.10).pvalue > 0.001
    assert supervisor.tick() == []  # hold time not over yet
    clock.now += timedelta(seconds=61)
    assert supervisor.tick() == ["canary: canary step 1: challenger at 50%"]
    assert services.catalog.get("canary").shares["challenger"] == pytest.approx(0.5)
    # Users assigned at 10% keep their group.
    assert [predict(services, f"c{i}", "canary") for i in range(300)] == groups
    actions = [e["action"] for e in services.admin.audit("canary")]
    assert actions == ["create", "start", "canary_step"]


def test_canary_rolls_back_when_the_challenger_crosses_a_latency_guard(services):
    supervisor, clock = canary_services(services, max_p99_ms=0.5, max_error_rate=0.5)
    for i in range(300):
        predict(services, f"r{i}", "canary")
    actions = supervisor.tick()
    assert actions and "rolled back" in actions[0]
    described = services.admin.get("canary")
    assert described["status"] == "stopped" and described["serving_variant"] == "control"
    entry = services.admin.audit("canary")[-1]
    assert entry["action"] == "canary_rollback" and entry["actor"] == "supervisor"
    assert "p99" in entry["after"]["reason"]
    assert {predict(services, f"r{i}", "canary") for i in range(50)} == {"control"}


def test_auto_stop_on_the_sequential_decision_and_on_max_duration(services):
    from ml_api.experiments.supervisor import ExperimentSupervisor
    shipped = []  # the events, where the Logstash transport would take them
    services.request_events.shipper.transport.send = (
        lambda lines, use_logging=False: shipped.extend(json.loads(line) for line in lines))
    services.admin.create({"name": "auto", "variants": TWO, "auto_stop": True,
                           "min_sample_size": 100, "mde": 0.1}, "t")
    services.admin.create({"name": "timed", "variants": TWO, "auto_stop": True,
                           "max_duration_hours": 1}, "t")
    for name in ("auto", "timed"):
        services.admin.transition(name, "start", "t")
    clock = Clock()
    supervisor = ExperimentSupervisor(services.store, services.exposures, services.admin,
                                      services.traffic, clock)
    rng = np.random.default_rng(5)
    for i in range(600):
        uid = f"a{i}"
        group = predict(services, uid, "auto")
        if rng.random() < (0.05 if group == "control" else 0.40):
            services.outcomes.record(FeedbackRequest(uid, "auto", "conversion", 1, None))
    message = ("challenger wins against control (sequential test, Holm-adjusted, running "
               "minimum over every look)")
    assert supervisor.tick() == [f"auto: decided: {message}",
                                 f"auto: stopped: sequential test decided: {message}"]
    clock.now += timedelta(hours=1, seconds=1)
    assert supervisor.tick() == ["timed: stopped: max_duration_hours (1) reached"]
    for name in ("auto", "timed"):
        entry = services.admin.audit(name)[-1]
        assert entry["action"] == "stop" and entry["actor"] == "supervisor"
        assert entry["after"]["reason"]
    # ... and each stop is an action event with its reason, for Kibana's annotations
    assert services.request_events.shipper.flush()
    stops = {e["experiment"]: e for e in shipped
             if e["event_type"] == "action" and e["action"] == "stop"}
    assert set(stops) == {"auto", "timed"}
    assert stops["timed"]["reason"] == "max_duration_hours (1) reached"
    assert stops["auto"]["actor"] == "supervisor"
