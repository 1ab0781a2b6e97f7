"""CUPED from a few sums per variant equals statsmodels' least-squares fit on the raw rows,
uids without a covariate kept with the mean imputed and a missing indicator."""
import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as hst
from scipy import stats

from ml_api.records.engine import utcnow
from ml_api.stats.cuped import CovariateSums, cuped_effect


def sums(y: np.ndarray, x: np.ndarray) -> CovariateSums:
    """A variant's sums; x is NaN where the uid came without a covariate."""
    seen = ~np.isnan(x)
    xs, ys = x[seen], y[seen]
    return CovariateSums(n=len(y), y=float(y.sum()), y2=float((y * y).sum()),
                         x=float(xs.sum()), x2=float((xs * xs).sum()), xy=float((xs * ys).sum()),
                         missing=int((~seen).sum()), y_missing=float(y[~seen].sum()))


def simulate(rng, n0, n1, effect, slope, noise, binary=False, missing=0.0):
    x = rng.normal(10, 3, n0 + n1)
    treated = np.r_[np.zeros(n0), np.ones(n1)]
    y = 2 + slope * x + effect * treated + rng.normal(0, noise, n0 + n1)
    if binary:  # a conversion whose chance grows with the covariate (pre-period activity)
        y = (rng.random(n0 + n1) < 1 / (1 + np.exp(-(y - 10) / 3))).astype(float)
    x[rng.random(n0 + n1) < missing] = np.nan
    return x, treated, y


def ols_fit(x, treated, y):
    """statsmodels' OLS of y ~ 1 + treatment + x' + M, x' the covariate with the missing
    values set to the observed mean and M the missing indicator; a column that adds no rank
    (M with nothing missing, x' and M with everything missing) is left out, in that order."""
    missing = np.isnan(x)
    filled = np.where(missing, np.nanmean(x) if (~missing).any() else 0.0, x)
    columns = [np.ones_like(y), treated, filled, missing.astype(float)]
    kept = []
    for column in columns:
        candidate = np.column_stack(kept + [column])
        if np.linalg.matrix_rank(candidate) == len(kept) + 1:
            kept.append(column)
    return sm.OLS(y, np.column_stack(kept)).fit(), len(kept)


def compare_with_statsmodels(x, treated, y, n0, alpha=0.05):
    result = cuped_effect(sums(y[:n0], x[:n0]), sums(y[n0:], x[n0:]), alpha, tau=0.1)
    fit, rank = ols_fit(x, treated, y)
    if len(y) - rank < 1:
        assert result is None
        return None
    assert result["adjusted"]["estimate"] == pytest.approx(fit.params[1], rel=1e-6, abs=1e-9)
    # The fit works from per-arm sums: its residual variance is a difference of sums of
    # squares, exact to about 1e-12 of y's scale, so a perfect fit's standard error (0 in
    # exact arithmetic) comes out near the square root of that, not near 0.
    se_floor = np.sqrt(1e-12 * (1 + y.var()))
    assert np.sqrt(result["adjusted"]["variance"]) == pytest.approx(fit.bse[1], rel=1e-6,
                                                                    abs=se_floor)
    quantile = stats.t.ppf(1 - alpha / 2, fit.df_resid)
    assert result["adjusted"]["ci"] == pytest.approx(list(fit.conf_int(alpha)[1]), rel=1e-6,
                                                     abs=1e-9 + quantile * se_floor)
    assert result["degrees_of_freedom"] == fit.df_resid
    plain = sm.OLS(y, np.column_stack([np.ones_like(y), treated])).fit()
    assert result["unadjusted"]["estimate"] == pytest.approx(plain.params[1], abs=1e-9)
    assert result["unadjusted"]["variance"] == pytest.approx(plain.bse[1] ** 2, rel=1e-6,
                                                             abs=1e-12)
    return result


@pytest.mark.parametrize("n0,n1,binary", [(400, 500, False), (1200, 800, True), (30, 31, False)])
def test_adjusted_effect_error_and_t_interval_equal_statsmodels_ols(n0, n1, binary):
    rng = np.random.default_rng(n0 + n1)
    x, treated, y = simulate(rng, n0, n1, effect=0.5, slope=0.8, noise=2.0, binary=binary)
    result = compare_with_statsmodels(x, treated, y, n0)
    low, high = result["adjusted"]["ci"]
    seq_low, seq_high = result["sequential"]["absolute_lift_ci"]
    assert seq_low < low and high < seq_high  # always valid: wider than the fixed horizon


@settings(max_examples=150, deadline=None)
@given(n0=hst.integers(2, 60), n1=hst.integers(2, 60), binary=hst.booleans(),
       missing=hst.sampled_from([0.0, 0.3, 0.7, 1.0]), seed=hst.integers(0, 2**32 - 1))
def test_missing_covariates_stay_in_and_the_fit_is_statsmodels_ols(n0, n1, binary, missing,
                                                                    seed):
    rng = np.random.default_rng(seed)
    x, treated, y = simulate(rng, n0, n1, effect=0.3, slope=0.8, noise=1.0, binary=binary,
                             missing=missing)
    compare_with_statsmodels(x, treated, y, n0)


def test_a_perfect_fit_with_most_covariates_missing_matches_statsmodels_to_the_sums_precision():
    """Two and four converting-or-not uids, 70% without a covariate: the regression fits
    exactly: statsmodels' standard error is at rounding level, the sums' at the square root
    of their precision, and both are right to that precision."""
    rng = np.random.default_rng(4)
    x, treated, y = simulate(rng, 2, 4, effect=0.3, slope=0.8, noise=1.0, binary=True,
                             missing=0.7)
    compare_with_statsmodels(x, treated, y, 2)


@pytest.mark.parametrize("n0,n1", [(2, 2), (2, 3), (3, 2)])
def test_the_interval_at_four_or_five_uids_uses_the_t_quantile(n0, n1):
    """Before, the interval used the normal quantile 1.96 where the t quantile on one or two
    degrees of freedom is 12.7 or 4.3."""
    rng = np.random.default_rng(n0 * 10 + n1)
    x, treated, y = simulate(rng, n0, n1, effect=0.3, slope=0.8, noise=1.0)
    result = compare_with_statsmodels(x, treated, y, n0)
    low, high = result["adjusted"]["ci"]
    quantile = stats.t.isf(0.025, n0 + n1 - 3)
    assert (high - low) / 2 == pytest.approx(quantile * np.sqrt(result["adjusted"]["variance"]))


def test_the_variance_shrinks_by_one_over_one_minus_rho_squared():
    rng = np.random.default_rng(7)
    n = 20_000
    x, treated, y = simulate(rng, n, n, effect=0.0, slope=1.0, noise=2.0)
    rho = np.corrcoef(x, y)[0, 1]
    result = cuped_effect(sums(y[:n], x[:n]), sums(y[n:], x[n:]))
    assert result["variance_reduction_factor"] == pytest.approx(1 / (1 - rho ** 2), rel=0.05)
    assert result["variance_reduction_factor"] > 2  # this covariate halves the sample needed


def test_the_factor_compares_one_variance_model_with_unequal_splits_and_variances():
    """Before, the factor divided a Welch variance by a pooled one: with a 1:9 split and a
    treatment that triples the noise, it was far from 1 for a covariate unrelated to y."""
    rng = np.random.default_rng(8)
    n0, n1 = 1000, 9000
    x = rng.normal(size=n0 + n1)
    y = np.r_[rng.normal(0, 1, n0), rng.normal(0, 3, n1)]
    result = cuped_effect(sums(y[:n0], x[:n0]), sums(y[n0:], x[n0:]))
    assert result["variance_reduction_factor"] == pytest.approx(1.0, abs=0.01)


def test_a_constant_covariate_leaves_the_plain_difference_and_too_few_uids_nothing():
    constant = CovariateSums(n=10, y=5, y2=5, x=10, x2=10, xy=5)
    result = cuped_effect(constant, constant)
    assert result["theta"] is None
    assert result["adjusted"]["estimate"] == result["unadjusted"]["estimate"] == 0
    assert cuped_effect(CovariateSums(n=1, y=1, y2=1, x=1, x2=1, xy=1), constant) is None


@pytest.mark.parametrize("metric_type", ["mean", "conversion"])
def test_results_adjust_for_the_covariate_sent_with_predict_as_ols_does(services, metric_type):
    """Covariates sent with the first /predict of 70% of the uids, outcomes (refunds
    included) through /feedback: the results' CUPED effect, its standard error and t
    interval equal statsmodels' OLS on the raw per-uid rows with the missing ones kept, and
    the declared adjusted test decides."""
    from ml_api.validation import FeedbackRequest, PredictRequest
    from tests.helpers import FEATURES

    services.admin.create({"name": "cuped", "metric_type": metric_type, "mde": 0.5,
                           "cuped": True,
                           "variants": [{"name": "a", "model": "logreg@1"},
                                        {"name": "b", "model": "gboost@1"}]}, "t")
    services.admin.transition("cuped", "start", "t")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(300):
        uid, x = f"c{i}", float(rng.normal(10, 3))
        sent = x if rng.random() < 0.7 else None
        group = services.prediction.predict(PredictRequest(uid, FEATURES, "cuped", sent)).group
        total = 0.0
        for _ in range(int(rng.integers(0, 3))):
            value = float(round(max(0.0, x / 5 + (1.0 if group == "b" else 0.0)
                                    + rng.normal(0, 1)), 3))
            if value:
                services.outcomes.record(FeedbackRequest(uid, "cuped", "conversion", value, None))
                total += value
        if total and rng.random() < 0.1:  # a refund back to nothing: no longer converting
            services.outcomes.record(FeedbackRequest(uid, "cuped", "conversion", -total, None))
            total = 0.0
        y = float(total > 0) if metric_type == "conversion" else total
        rows.append((np.nan if sent is None else x, float(group == "b"), y))
    x, treated, y = (np.array(column) for column in zip(*rows))
    fit, _ = ols_fit(x, treated, y)
    services.admin.take_look("cuped", utcnow())  # the supervisor's look: running values
    results = services.admin.results("cuped")
    cuped = results["comparisons"][0]["cuped"]
    assert cuped["applied"] and cuped["missing"] == int(np.isnan(x).sum()) > 0
    assert cuped["adjusted"]["estimate"] == pytest.approx(fit.params[1], rel=1e-6, abs=1e-9)
    assert np.sqrt(cuped["adjusted"]["variance"]) == pytest.approx(fit.bse[1], rel=1e-6)
    assert cuped["adjusted"]["ci"] == pytest.approx(list(fit.conf_int(0.05)[1]), rel=1e-6)
    assert cuped["sequential"]["p_value_adjusted"] == cuped["sequential"]["p_value"]  # one
    plain = sm.OLS(y, np.column_stack([np.ones_like(y), treated])).fit()
    assert cuped["variance_reduction_factor"] == pytest.approx(plain.bse[1] ** 2
                                                               / fit.bse[1] ** 2, rel=1e-6)
    assert results["decision"]["test"] == "CUPED-adjusted sequential test"
    assert results["comparisons"][0]["running"]["test"] == "cuped"
    size, factor = results["sample_size"], plain.bse[1] ** 2 / fit.bse[1] ** 2
    assert size["variance_reduction_factor"] == pytest.approx(factor, rel=1e-6)
    if metric_type == "mean":  # a conversion rate of 0.5 + mde 0.5 has no sample size
        assert size["per_variant"] == math.ceil(size["unadjusted_per_variant"] / factor)
    demo = services.admin.results("demo")  # no covariate declared: the unadjusted test
    assert demo["decision"]["test"] == "sequential test"
    assert demo["sample_size"]["variance_reduction_factor"] is None
    assert demo["sample_size"]["per_variant"] == demo["sample_size"]["unadjusted_per_variant"]


def test_the_declared_test_cannot_be_switched_after_creation(client, admin_headers):
    """A patch of `cuped` is refused with a 422 and nothing changes."""
    before = client.get("/experiments/demo", headers=admin_headers).get_json()
    answer = client.patch("/experiments/demo", json={"cuped": True}, headers=admin_headers)
    assert answer.status_code == 422 and "cuped" in answer.get_json()["message"]
    assert client.get("/experiments/demo", headers=admin_headers).get_json() == before
