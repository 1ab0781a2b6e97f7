"""CUPED from six sums per variant equals statsmodels' least-squares fit on the raw rows."""
import numpy as np
import pytest
import statsmodels.api as sm

from ml_api.stats.cuped import CovariateSums, cuped_effect


def sums(y: np.ndarray, x: np.ndarray) -> CovariateSums:
    return CovariateSums(n=len(y), y=float(y.sum()), y2=float((y * y).sum()), x=float(x.sum()),
                         x2=float((x * x).sum()), xy=float((x * y).sum()))


def simulate(rng, n0, n1, effect, slope, noise, binary=False):
    x = rng.normal(10, 3, n0 + n1)
    treated = np.r_[np.zeros(n0), np.ones(n1)]
    y = 2 + slope * x + effect * treated + rng.normal(0, noise, n0 + n1)
    if binary:  # a conversion whose chance grows with the covariate (pre-period activity)
        y = (rng.random(n0 + n1) < 1 / (1 + np.exp(-(y - 10) / 3))).astype(float)
    return x, treated, y


def ols_treatment(x, treated, y):
    design = sm.add_constant(np.column_stack([treated, x - x.mean()]))
    fit = sm.OLS(y, design).fit()
    return fit.params[1], fit.bse[1]


@pytest.mark.parametrize("n0,n1,binary", [(400, 500, False), (1200, 800, True), (30, 31, False)])
def test_adjusted_effect_and_its_error_equal_the_ols_treatment_coefficient(n0, n1, binary):
    rng = np.random.default_rng(n0 + n1)
    x, treated, y = simulate(rng, n0, n1, effect=0.5, slope=0.8, noise=2.0, binary=binary)
    result = cuped_effect(sums(y[:n0], x[:n0]), sums(y[n0:], x[n0:]), tau=0.1)
    coefficient, standard_error = ols_treatment(x, treated, y)
    assert result["adjusted"]["estimate"] == pytest.approx(coefficient, rel=1e-6, abs=1e-9)
    assert np.sqrt(result["adjusted"]["variance"]) == pytest.approx(standard_error, rel=1e-6)
    # the unadjusted figures are the plain difference of means and Welch's variance
    assert result["unadjusted"]["estimate"] == pytest.approx(y[n0:].mean() - y[:n0].mean())
    welch = y[:n0].var(ddof=1) / n0 + y[n0:].var(ddof=1) / n1
    assert result["unadjusted"]["variance"] == pytest.approx(welch, rel=1e-9)
    low, high = result["adjusted"]["ci"]
    assert low < result["adjusted"]["estimate"] < high
    seq_low, seq_high = result["sequential"]["absolute_lift_ci"]
    assert seq_low < low and high < seq_high  # always valid: wider than the fixed horizon


def test_the_variance_shrinks_by_one_over_one_minus_rho_squared():
    rng = np.random.default_rng(7)
    n = 20_000
    x, treated, y = simulate(rng, n, n, effect=0.0, slope=1.0, noise=2.0)
    rho = np.corrcoef(x, y)[0, 1]
    result = cuped_effect(sums(y[:n], x[:n]), sums(y[n:], x[n:]))
    assert result["variance_reduction_factor"] == pytest.approx(1 / (1 - rho ** 2), rel=0.05)
    assert result["variance_reduction_factor"] > 2  # this covariate halves the sample needed


def test_nothing_to_adjust_with_a_constant_covariate_or_too_few_uids():
    constant = CovariateSums(n=10, y=5, y2=5, x=10, x2=10, xy=5)
    assert cuped_effect(constant, constant) is None
    assert cuped_effect(CovariateSums(n=1, y=1, y2=1, x=1, x2=1, xy=1), constant) is None


@pytest.mark.parametrize("metric_type", ["mean", "conversion"])
def test_results_adjust_for_the_covariate_sent_with_predict_as_ols_does(services, metric_type):
    """Covariates sent with each uid's first /predict, outcomes (refunds included) through
    /feedback: the results' CUPED effect and its standard error equal statsmodels' OLS on
    the raw per-uid rows, and the decision says it used the adjusted test."""
    from ml_api.validation import FeedbackRequest, PredictRequest
    from tests.helpers import FEATURES

    services.admin.create({"name": "cuped", "metric_type": metric_type, "mde": 0.5,
                           "variants": [{"name": "a", "model": "logreg@1"},
                                        {"name": "b", "model": "gboost@1"}]}, "t")
    services.admin.transition("cuped", "start", "t")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(300):
        uid, x = f"c{i}", float(rng.normal(10, 3))
        group = services.prediction.predict(PredictRequest(uid, FEATURES, "cuped", x)).group
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
        rows.append((x, float(group == "b"), y))
    x, treated, y = (np.array(column) for column in zip(*rows))
    coefficient, standard_error = ols_treatment(x, treated, y)
    results = services.admin.results("cuped")
    cuped = results["comparisons"][0]["cuped"]
    assert cuped["applied"]
    assert cuped["adjusted"]["estimate"] == pytest.approx(coefficient, rel=1e-6, abs=1e-9)
    assert np.sqrt(cuped["adjusted"]["variance"]) == pytest.approx(standard_error, rel=1e-6)
    assert cuped["sequential"]["p_value_adjusted"] == cuped["sequential"]["p_value"]  # one
    assert cuped["variance_reduction_factor"] > 1
    assert results["decision"]["test"] == "CUPED-adjusted sequential test"
    demo = services.admin.results("demo")  # no covariates: the unadjusted test decides
    assert demo["decision"]["test"] == "sequential test"
