"""Always-valid over the experiment's life: the running minimum of the mSPRT p-value and the
running intersection of its interval over every stored look (Johari, Koomen, Pekelis and
Walsh, "Always Valid Inference"), recomputed here from the textbook definitions on the raw
counts and from the stored rows, equal what /results shows; a decision, once reached,
stays until an explicit reason reverses it."""
import itertools
import math
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from scipy import optimize
from sqlalchemy import text

from ml_api.experiments.supervisor import ExperimentSupervisor
from ml_api.records.engine import utcnow
from ml_api.records.snapshots import SnapshotStore

TWO = [{"name": "a", "model": "logreg@1", "weight": 1},
       {"name": "b", "model": "gboost@1", "weight": 1}]
ALPHA, TAU = 0.05, 0.05
names = itertools.count()


def lambda_n(diff: float, variance: float, theta: float = 0.0) -> float:
    """The normal-mixture likelihood ratio of H0: effect = theta (Johari et al., eq. 11)."""
    v, t2 = variance, TAU * TAU
    return math.sqrt(v / (v + t2)) * math.exp((diff - theta) ** 2 * t2 / (2 * v * (v + t2)))


def textbook_look(counts: dict) -> tuple[float, float, float, float]:
    """(estimate, 1/Lambda capped at 1, interval ends) from each arm's (users, converting):
    the interval is every theta whose Lambda stays below 1/alpha, found by root finding."""
    (n_a, x_a), (n_b, x_b) = counts["a"], counts["b"]
    p_a, p_b = x_a / n_a, x_b / n_b
    diff, variance = p_b - p_a, p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b
    if variance == 0:
        return diff, 1.0, -math.inf, math.inf
    gap = lambda theta: math.log(lambda_n(diff, variance, theta)) - math.log(1 / ALPHA)  # noqa
    reach = 1.0
    while gap(diff + reach) < 0:
        reach *= 2
    low = optimize.brentq(gap, diff - reach, diff, xtol=1e-14)
    high = optimize.brentq(gap, diff, diff + reach, xtol=1e-14)
    return diff, min(1.0, 1 / lambda_n(diff, variance)), low, high


class World:
    """An experiment fed directly through the stores, looked at by the supervisor once a
    simulated minute."""

    def __init__(self, services, **settings):
        self.services, self.name = services, f"av{next(names)}"
        services.admin.create({"name": self.name, "variants": TWO, "mde": TAU, **settings}, "t")
        services.admin.transition(self.name, "start", "t")
        self.id = services.store.load_experiment(self.name).id
        self.counts = {"a": [0, 0], "b": [0, 0]}
        self.now = utcnow()
        self.supervisor = ExperimentSupervisor(
            services.store, services.exposures, services.admin, services.traffic,
            lambda: self.now, snapshots=SnapshotStore(services.store.engine))

    def add(self, arm: str, users: int, converting: int) -> None:
        for i in range(users):
            uid = f"{arm}{self.counts[arm][0]}"
            self.services.exposures.record_exposure(self.id, uid, arm, {"a": 0.5, "b": 0.5})
            if i < converting:
                self.services.exposures.record_outcome(self.id, uid, "conversion", 1.0)
            self.counts[arm][0] += 1
        self.counts[arm][1] += converting

    def look(self) -> list[str]:
        self.now += timedelta(minutes=1)
        return self.supervisor.tick()

    def stored(self) -> list[dict]:
        with self.services.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(
                "SELECT * FROM sequential_looks WHERE experiment_id = :e ORDER BY taken_at"),
                {"e": self.id}).mappings()]


def comparison(services, name: str) -> dict:
    return services.admin.results(name)["comparisons"][0]


batches = hst.lists(hst.tuples(hst.integers(2, 40), hst.integers(2, 40),
                               hst.floats(0, 1), hst.floats(0, 1)), min_size=1, max_size=6)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches)
def test_running_values_are_the_minimum_and_intersection_over_the_stored_looks(services, looks):
    world = World(services)
    expected = []
    for n_a, n_b, rate_a, rate_b in looks:
        world.add("a", n_a, round(n_a * rate_a))
        world.add("b", n_b, round(n_b * rate_b))
        world.look()
        expected.append(textbook_look(world.counts))
    stored = world.stored()
    assert len(stored) == len(looks)
    for row, (estimate, p_value, low, high) in zip(stored, expected):
        assert row["estimate"] == pytest.approx(estimate, abs=1e-12)
        assert row["p_value"] == pytest.approx(p_value, rel=1e-9, abs=1e-12)
        assert (row["ci_low"] is None) == math.isinf(low)
        if row["ci_low"] is not None:
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), abs=1e-9)
    running = comparison(services, world.name)["running"]
    assert running["looks"] == len(looks)  # the stored looks only: the read adds nothing new
    assert running["p_value"] == pytest.approx(min(e[1] for e in expected), rel=1e-9,
                                               abs=1e-12)
    low = max(e[2] for e in expected)
    high = min(e[3] for e in expected)
    assert running["absolute_lift_ci"] == pytest.approx([low, high], abs=1e-9)
    recomputed = min(row["p_value"] for row in stored)
    assert running["p_value"] == recomputed


def test_a_winner_stays_when_a_later_look_weakens_the_evidence(services):
    """Before the running values, the p-value of the latest look alone decided, and a winner
    could turn back into "keep running"."""
    world = World(services)
    world.add("a", 150, 10)
    world.add("b", 150, 60)
    assert world.look()[0].startswith(f"{world.name}: decided: b wins")
    decided = comparison(services, world.name)["running"]
    world.add("a", 400, 200)  # the control catches up: this look alone finds nothing
    world.add("b", 400, 150)
    current = comparison(services, world.name)
    assert current["sequential"]["p_value"] > ALPHA
    assert current["running"]["p_value"] == decided["p_value"] <= ALPHA
    assert world.look() == []
    results = services.admin.results(world.name)
    assert results["decision"]["outcome"] == "winner" and results["decision"]["winner"] == "b"
    assert [e["action"] for e in services.admin.audit(world.name)][-1] == "decision"


def test_a_sample_ratio_mismatch_reverses_a_decision_and_the_audit_log_says_why(services):
    world = World(services)
    world.add("a", 150, 10)
    world.add("b", 150, 60)
    world.look()
    world.add("a", 600, 60)  # half the expected b uids never arrive
    actions = world.look()
    assert any("decision reversed: sample ratio mismatch" in a for a in actions)
    entry = services.admin.audit(world.name)[-1]
    assert entry["action"] == "decision_reversed"
    assert entry["after"]["reason"].startswith("sample ratio mismatch")
    assert entry["before"]["decision"]["winner"] == "b"
    assert services.admin.results(world.name)["decision"]["outcome"] == "sample_ratio_mismatch"


def test_a_read_that_shows_a_winner_stores_its_look_and_a_later_read_still_shows_it(services):
    """Before, a read folded an unstored look of its own into the running values: a first
    read said "winner", and a read after the evidence weakened said "keep running"."""
    world = World(services)
    world.add("a", 150, 10)
    world.add("b", 150, 60)
    first = services.admin.results(world.name)  # no look stored yet by the supervisor
    assert first["decision"]["outcome"] == "winner" and first["decision"]["winner"] == "b"
    assert len(world.stored()) == 1 == first["comparisons"][0]["running"]["looks"]
    world.add("a", 400, 200)
    world.add("b", 400, 150)
    later = services.admin.results(world.name)
    assert later["comparisons"][0]["sequential"]["p_value"] > ALPHA  # this look alone: nothing
    assert later["decision"]["outcome"] == "winner" and later["decision"]["winner"] == "b"
    assert later["comparisons"][0]["running"] == first["comparisons"][0]["running"]


def test_a_read_that_changes_nothing_stores_no_look(services):
    world = World(services)
    world.add("a", 30, 10)
    world.add("b", 30, 11)
    results = services.admin.results(world.name)
    assert results["decision"]["outcome"] != "winner"
    assert world.stored() == [] and results["comparisons"][0]["running"] is None


def test_holm_counts_every_declared_challenger_even_one_without_data_yet():
    """Before, the family was only the comparisons with values: a challenger with no
    exposures yet left the other one tested at alpha instead of alpha / 2."""
    from ml_api.stats.always_valid import adjust_over_family
    running = [{"p_value": 0.03}]
    adjust_over_family(running, family=2)
    assert running[0]["p_value_adjusted"] == pytest.approx(0.06)
    both = [{"p_value": 0.03}, {"p_value": 0.5}]
    adjust_over_family(both, family=2)
    assert [r["p_value_adjusted"] for r in both] == pytest.approx([0.06, 0.5])
