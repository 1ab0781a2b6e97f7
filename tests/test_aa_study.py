"""A/A study on the statistics module: peeking breaks the naive test, not the mSPRT."""
from ml_api.stats.aa_study import run_aa_study


def test_sequential_test_holds_alpha_under_continuous_monitoring():
    result = run_aa_study(experiments=500, users_per_arm=10_000, look_every=100)
    assert result["sequential_false_positive_rate"] <= result["alpha"]
    # The same data, the fixed-horizon z-test checked at every look: far above alpha.
    assert result["naive_peeking_false_positive_rate"] > 2 * result["alpha"]
    # Checked once at the end, the naive test is fine: it is the peeking that breaks it.
    assert result["naive_single_look_false_positive_rate"] < 0.08


def test_cuped_sequential_test_holds_alpha_and_detects_sooner():
    from ml_api.stats.aa_study import run_cuped_study

    null = run_cuped_study(effect=0.0)
    assert null["cuped_rejection_rate"] <= null["alpha"]
    assert null["plain_rejection_rate"] <= null["alpha"]
    # A small true effect (0.08 standard deviations), a covariate correlated 0.7: within
    # 4,000 users per arm the adjusted test finds it in more experiments; given room for both
    # to find it, it needs about half the users (1 - rho^2 = 0.51 of the variance).
    short = run_cuped_study(effect=0.08)
    assert short["cuped_rejection_rate"] > short["plain_rejection_rate"] + 0.2
    real = run_cuped_study(effect=0.08, users_per_arm=10_000)
    assert min(real["cuped_rejection_rate"], real["plain_rejection_rate"]) > 0.95
    assert real["cuped_mean_users_to_detect"] < 0.6 * real["plain_mean_users_to_detect"]


def test_the_paired_shadow_test_holds_alpha_and_needs_fewer_labels_than_the_unpaired():
    from ml_api.stats.aa_study import run_paired_study

    null = run_paired_study(labels=20_000, look_every=200)  # two equally good models
    assert abs(null["log_loss_improvement"]) < 0.002
    assert null["paired_rejection_rate"] <= null["alpha"]
    assert null["unpaired_rejection_rate"] <= null["alpha"]
    # The shadow model's error is 0.8 of the primary's: about 0.03 nats less log-loss. The
    # same labels, paired, find it in every experiment with fewer than half the labels.
    real = run_paired_study(labels=20_000, look_every=200, shadow_noise=0.8)
    assert 0.02 < real["log_loss_improvement"] < 0.04
    assert real["paired_rejection_rate"] >= real["unpaired_rejection_rate"] > 0.9
    assert real["paired_mean_labels_to_detect"] < 0.5 * real["unpaired_mean_labels_to_detect"]
