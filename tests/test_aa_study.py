"""A/A study on the statistics module: peeking breaks the naive test, not the mSPRT."""
from ml_api.stats.aa_study import run_aa_study


def test_sequential_test_holds_alpha_under_continuous_monitoring():
    result = run_aa_study(experiments=500, users_per_arm=10_000, look_every=100)
    assert result["sequential_false_positive_rate"] <= result["alpha"]
    # The same data, the fixed-horizon z-test checked at every look: far above alpha.
    assert result["naive_peeking_false_positive_rate"] > 2 * result["alpha"]
    # Checked once at the end, the naive test is fine: it is the peeking that breaks it.
    assert result["naive_single_look_false_positive_rate"] < 0.08
