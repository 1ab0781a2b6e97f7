"""The decision rule on synthetic counters (pure: no database)."""
import pytest

from ml_api.domain.experiments import Experiment, Variant
from ml_api.stats.results import MetricSums, experiment_results


def experiment(n_variants=2, **config):
    variants = tuple(Variant(f"v{i}", "m@1", 1) for i in range(n_variants))
    return Experiment(id=1, name="e", salt="e", status="running", variants=variants,
                      config=config)


def conversions(counts):
    exposures = {f"v{i}": n for i, (n, _) in enumerate(counts)}
    expected = {name: sum(exposures.values()) / len(counts) for name in exposures}
    sums = {f"v{i}": MetricSums(users=x, events=x, total=x, total_sq=x)
            for i, (_, x) in enumerate(counts)}
    return exposures, expected, sums


@pytest.mark.parametrize("counts,outcome,winner", [
    ([(10000, 1000), (10000, 1300)], "winner", "v1"),
    ([(10000, 1300), (10000, 1000)], "winner", "v0"),
    ([(5000, 500), (5000, 505)], "no_significant_difference", None),
    ([(300, 30), (300, 35)], "keep_running", None),
    ([(10000, 1000), (10000, 1000), (10000, 1300)], "winner", "v2"),
])
def test_decisions(counts, outcome, winner):
    results = experiment_results(experiment(len(counts)), *conversions(counts))
    assert results["decision"]["outcome"] == outcome
    assert results["decision"]["winner"] == winner


def test_a_fixed_horizon_significant_result_is_not_enough_to_decide():
    # p < 0.05 on the z-test, but the always-valid test has not crossed: keep running.
    results = experiment_results(experiment(), *conversions([(3000, 300), (3000, 350)]))
    comparison = results["comparisons"][0]
    assert comparison["fixed_horizon"]["p_value"] < 0.05
    assert comparison["sequential"]["p_value"] > 0.05
    # the decision's own figures are the first a reader meets, before the fixed-horizon ones
    assert list(comparison)[2:4] == ["lift", "sequential"]
    assert results["decision"]["outcome"] == "keep_running"


def test_progress_counts_the_smallest_arm():
    results = experiment_results(experiment(mde=0.02), *conversions([(1000, 100), (500, 50)]))
    required = results["sample_size"]["per_variant"]
    assert results["sample_size"]["progress"] == pytest.approx(500 / required)


def test_the_last_point_of_the_effect_over_time_is_the_results_sequential_interval():
    from datetime import datetime, timedelta

    from ml_api.stats.results import effect_over_time

    start = datetime(2026, 1, 1)
    grown = []
    for i in range(1, 6):
        exposures, _, sums = conversions([(300 * i, 30 * i), (300 * i, 45 * i)])
        grown.append((start + timedelta(minutes=i), exposures, sums))
    points = effect_over_time(experiment(), grown)
    results = experiment_results(experiment(), *conversions([(1500, 150), (1500, 225)]))
    sequential = results["comparisons"][0]["sequential"]["absolute_lift_ci"]
    assert points[-1]["ci"] == pytest.approx(sequential)
    assert points[-1]["estimate"] == pytest.approx(results["comparisons"][0]["lift"]["absolute"])
    assert [p["at"] for p in points] == [at.isoformat() for at, _, _ in grown]
    # evenly thinned to at most max_points, the last snapshot always kept
    thinned = effect_over_time(experiment(), grown, max_points=3)
    assert [p["at"] for p in thinned] == [grown[i][0].isoformat() for i in (0, 2, 4)]
