"""ml_api.stats.inference against scipy and statsmodels on the same counts (to 1e-6)."""
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import betaln
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from ml_api.stats import inference as st

COUNTS = [(0, 10), (3, 10), (100, 1000), (123, 1000), (5000, 50000), (9999, 10000)]
PAIRS = [((100, 1000), (120, 1000)), ((1000, 10000), (1010, 10000)), ((5, 40), (12, 45)),
         ((480, 5000), (560, 5100))]


@pytest.mark.parametrize("x,n", COUNTS)
def test_wilson_matches_statsmodels(x, n):
    expected = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert st.wilson_interval(x, n) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("control,treatment", PAIRS)
def test_two_proportion_ztest_matches_statsmodels(control, treatment):
    z, p = st.two_proportion_ztest(*control, *treatment)
    ez, ep = proportions_ztest([treatment[0], control[0]], [treatment[1], control[1]])
    assert (z, p) == pytest.approx((ez, ep), abs=1e-9)


@pytest.mark.parametrize("control,treatment", PAIRS)
def test_absolute_lift_matches_statsmodels_wald(control, treatment):
    (xc, nc), (xt, nt) = control, treatment
    pc, pt = xc / nc, xt / nt
    diff, low, high = st.absolute_lift(pc, pc * (1 - pc) / nc, pt, pt * (1 - pt) / nt)
    expected = confint_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff")
    assert diff == pytest.approx(pt - pc)
    assert (low, high) == pytest.approx(expected, abs=1e-9)


def test_relative_lift_delta_method_matches_a_numerical_gradient():
    pc, vc, pt, vt = 0.10, 0.10 * 0.9 / 1000, 0.12, 0.12 * 0.88 / 1000
    rel, low, high = st.relative_lift(pc, vc, pt, vt)
    h = 1e-7
    d_dc = ((pt / (pc + h) - 1) - (pt / (pc - h) - 1)) / (2 * h)
    d_dt = (((pt + h) / pc - 1) - ((pt - h) / pc - 1)) / (2 * h)
    se = math.sqrt(d_dc ** 2 * vc + d_dt ** 2 * vt)
    assert rel == pytest.approx(0.2)
    assert (high - low) / 2 == pytest.approx(stats.norm.isf(0.025) * se, rel=1e-6)
    assert st.relative_lift(0.0, 0.0, 0.1, 0.001) is None


@pytest.mark.parametrize("args", [
    (1.0, 4.0, 100, 1.3, 5.0, 120), (0.1, 0.09, 1000, 0.12, 0.1056, 1000), (5, 1, 10, 6, 9, 7)])
def test_welch_matches_scipy(args):
    mc, vc, nc, mt, vt, nt = args
    t, df, p = st.welch_ttest(mc, vc, nc, mt, vt, nt)
    expected = stats.ttest_ind_from_stats(mt, math.sqrt(vt), nt, mc, math.sqrt(vc), nc,
                                          equal_var=False)
    assert (t, p) == pytest.approx((expected.statistic, expected.pvalue), abs=1e-9)


def exact_prob_b_beats_a(a_alpha, a_beta, b_alpha, b_beta):
    """Evan Miller's closed form for P(B > A) with Beta posteriors (integer b_alpha)."""
    total = 0.0
    for i in range(b_alpha):
        total += math.exp(betaln(a_alpha + i, a_beta + b_beta) - math.log(b_beta + i)
                          - betaln(1 + i, b_beta) - betaln(a_alpha, a_beta))
    return total


@pytest.mark.parametrize("control,treatment", PAIRS)
def test_prob_to_beat_matches_the_closed_form(control, treatment):
    (xc, nc), (xt, nt) = control, treatment
    expected = exact_prob_b_beats_a(1 + xc, 1 + nc - xc, 1 + xt, 1 + nt - xt)
    assert st.prob_to_beat(xc, nc, xt, nt) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("counts,expected", [
    ([5000, 5000], [0.5, 0.5]), ([5200, 4800], [0.5, 0.5]), ([900, 100, 0], [0.8, 0.2, 0])])
def test_srm_matches_scipy_chisquare(counts, expected):
    kept = [(c, e) for c, e in zip(counts, expected) if e > 0]
    total = sum(c for c, _ in kept)
    scipy_p = stats.chisquare([c for c, _ in kept], [e * total for _, e in kept]).pvalue
    assert st.srm_pvalue(counts, expected) == pytest.approx(scipy_p, abs=1e-9)


@pytest.mark.parametrize("p_base,mde", [(0.10, 0.02), (0.10, 0.01), (0.5, -0.05), (0.02, 0.005)])
def test_sample_size_matches_statsmodels(p_base, mde):
    h = proportion_effectsize(p_base + mde, p_base)
    expected = NormalIndPower().solve_power(effect_size=abs(h), alpha=0.05, power=0.8, ratio=1)
    assert st.sample_size_unrounded(p_base, mde, 0.05, 0.8) == pytest.approx(expected, rel=1e-6)
    assert st.required_sample_size(p_base, mde) == math.ceil(expected)


def test_holm_matches_statsmodels():
    pvalues = [0.01, 0.04, 0.03, 0.20]
    expected = multipletests(pvalues, alpha=0.05, method="holm")[1]
    assert st.holm(pvalues) == pytest.approx(list(expected), abs=1e-12)


def test_msprt_interval_is_the_set_the_test_does_not_reject():
    diff, variance, tau, alpha = 0.02, 0.0001, 0.02, 0.05
    p, low, high = st.msprt(diff, variance, tau, alpha)
    # At the interval's ends the test of "theta = end" sits exactly at the rejection boundary.
    for end in (low, high):
        assert st.msprt(diff - end, variance, tau, alpha)[0] == pytest.approx(alpha, rel=1e-9)
    assert st.msprt(diff - (low + high) / 2, variance, tau, alpha)[0] == 1.0
    # The mSPRT is more conservative than the fixed-horizon z-test at the same look.
    z_p = 2 * stats.norm.sf(diff / math.sqrt(variance))
    assert p > z_p
    assert st.msprt_pvalue_array(np.array([diff]), np.array([variance]), tau)[0] == \
        pytest.approx(p)


def test_prob_to_beat_at_large_counts():
    expected = exact_prob_b_beats_a(1 + 5000, 1 + 45000, 1 + 5150, 1 + 44850)
    assert st.prob_to_beat(5000, 50000, 5150, 50000) == pytest.approx(expected, abs=1e-6)
