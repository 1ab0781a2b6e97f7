"""A/A study on the statistics module: peeking breaks the naive test, not the mSPRT; the
running minimum p-value holds alpha and never flips a decision back."""
import pytest

from ml_api.stats.aa_study import flip_backs, run_aa_study


def test_flip_backs_count_decisions_that_came_and_went():
    import numpy as np

    decided = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=bool)
    assert flip_backs(decided) == 2


def test_sequential_test_holds_alpha_under_continuous_monitoring():
    result = run_aa_study(experiments=500, users_per_arm=10_000, look_every=100)
    assert result["sequential_false_positive_rate"] <= result["alpha"]
    assert result["running_min_false_positive_rate"] <= result["alpha"]
    # The current look alone decides and then undecides; the running minimum never does.
    assert result["current_look_flip_backs"] > 0 and result["running_min_flip_backs"] == 0
    # The same data, the fixed-horizon z-test checked at every look: far above alpha.
    assert result["naive_peeking_false_positive_rate"] > 2 * result["alpha"]
    # Checked once at the end, the naive test is fine: it is the peeking that breaks it.
    assert result["naive_single_look_false_positive_rate"] < 0.08


@pytest.mark.parametrize("missing", [pytest.param(0.0, marks=pytest.mark.slow), 0.3])
def test_cuped_sequential_test_holds_alpha_and_detects_sooner(missing):
    """A covariate correlated 0.7 with the metric, sent by all or by 70% of the uids (the
    rest kept, cuped.py): the running minimum p-value holds alpha, never flips back, and
    with a small true effect (0.08 standard deviations) the adjusted test finds it in more
    experiments, with fewer users."""
    from ml_api.stats.aa_study import run_cuped_study

    null = run_cuped_study(experiments=200, look_every=200, effect=0.0, missing=missing)
    assert null["cuped_rejection_rate"] <= null["alpha"]
    assert null["plain_rejection_rate"] <= null["alpha"]
    assert null["cuped_flip_backs"] == null["plain_flip_backs"] == 0
    short = run_cuped_study(experiments=200, look_every=200, effect=0.08, missing=missing)
    assert short["cuped_rejection_rate"] > short["plain_rejection_rate"] + 0.1
    assert short["cuped_mean_users_to_detect"] < 0.8 * short["plain_mean_users_to_detect"]
    assert short["cuped_flip_backs"] == 0 < short["cuped_current_look_flip_backs"]


@pytest.mark.slow
@pytest.mark.parametrize("missing,share", [(0.0, 0.6), (0.3, 0.75)])
def test_with_room_to_find_it_cuped_needs_about_one_minus_rho_squared_of_the_users(missing,
                                                                                     share):
    """Given room for both tests to find the effect, the adjusted test needs about
    1 - rho^2 = 0.51 of the users with every covariate sent, about 1 - 0.7 rho^2 = 0.66
    with 30% missing."""
    from ml_api.stats.aa_study import run_cuped_study

    real = run_cuped_study(effect=0.08, users_per_arm=10_000, missing=missing)
    assert min(real["cuped_rejection_rate"], real["plain_rejection_rate"]) > 0.95
    assert real["cuped_mean_users_to_detect"] < share * real["plain_mean_users_to_detect"]


def test_the_paired_shadow_test_holds_alpha_and_needs_fewer_labels_than_the_unpaired():
    from ml_api.stats.aa_study import run_paired_study

    null = run_paired_study(labels=20_000, look_every=200)  # two equally good models
    assert abs(null["log_loss_improvement"]) < 0.002
    assert null["paired_rejection_rate"] <= null["alpha"]  # the shadow decision's FPR
    assert null["unpaired_rejection_rate"] <= null["alpha"]
    assert null["paired_flip_backs"] == 0
    # The shadow model's error is 0.8 of the primary's: about 0.03 nats less log-loss. The
    # same labels, paired, find it in every experiment with fewer than half the labels.
    real = run_paired_study(labels=20_000, look_every=200, shadow_noise=0.8)
    assert 0.02 < real["log_loss_improvement"] < 0.04
    assert real["paired_rejection_rate"] >= real["unpaired_rejection_rate"] > 0.9
    assert real["paired_mean_labels_to_detect"] < 0.5 * real["unpaired_mean_labels_to_detect"]
