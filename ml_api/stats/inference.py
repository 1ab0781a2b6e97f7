"""Statistics for experiment results. Pure functions of counts and sums: no I/O.

Fixed-horizon tests (z-test, Welch) are reported for information; decisions use the mSPRT
(mixture sequential probability ratio test, Johari et al. 2017), whose p-value and
confidence interval stay valid however often results are looked at.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import integrate, optimize, special, stats

# scipy.special's ndtr/ndtri are the normal cdf and its inverse without scipy.stats' per-call
# overhead, which adds up inside root finding and integration.
_normal_cdf = special.ndtr


def _z(alpha: float) -> float:
    return float(-special.ndtri(alpha / 2))


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    z = _z(alpha)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return centre - half, centre + half


def two_proportion_ztest(x_c: int, n_c: int, x_t: int, n_t: int) -> tuple[float, float]:
    """(z, two-sided p) of treatment minus control, pooled variance."""
    pooled = (x_c + x_t) / (n_c + n_t)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    if se == 0:
        return 0.0, 1.0
    z = (x_t / n_t - x_c / n_c) / se
    return z, float(2 * _normal_cdf(-abs(z)))


def welch_ttest(mean_c: float, var_c: float, n_c: int, mean_t: float, var_t: float,
                n_t: int) -> tuple[float, float, float]:
    """(t, degrees of freedom, two-sided p) of treatment minus control, unequal variances."""
    a, b = var_c / n_c, var_t / n_t
    if a + b == 0:
        return 0.0, float(n_c + n_t - 2), 1.0
    t = (mean_t - mean_c) / math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n_c - 1) + b * b / (n_t - 1))
    return t, df, float(2 * stats.t.sf(abs(t), df))


def absolute_lift(est_c: float, var_c: float, est_t: float, var_t: float,
                  alpha: float = 0.05) -> tuple[float, float, float]:
    """(difference, low, high): treatment minus control; var_* are variances of the estimates."""
    diff = est_t - est_c
    half = _z(alpha) * math.sqrt(var_c + var_t)
    return diff, diff - half, diff + half


def relative_lift(est_c: float, var_c: float, est_t: float, var_t: float,
                  alpha: float = 0.05) -> tuple[float, float, float] | None:
    """(t/c - 1, low, high) with a delta-method interval; None when the control is 0."""
    if est_c == 0:
        return None
    ratio = est_t / est_c
    se = math.sqrt(var_t / est_c ** 2 + est_t ** 2 * var_c / est_c ** 4)
    half = _z(alpha) * se
    return ratio - 1, ratio - 1 - half, ratio - 1 + half


def prob_to_beat(x_c: int, n_c: int, x_t: int, n_t: int, grid: int = 4001) -> float:
    """P(p_t > p_c) under independent Beta(1 + x, 1 + n - x) posteriors (uniform priors).

    The integral of f_t(p) * F_c(p) over the range holding all but 1e-12 of both posteriors,
    by Simpson's rule on a fixed grid (vectorised; accurate to ~1e-9 on smooth posteriors).
    """
    a_c, b_c, a_t, b_t = 1 + x_c, 1 + n_c - x_c, 1 + x_t, 1 + n_t - x_t
    low = min(special.betaincinv(a_c, b_c, 1e-12), special.betaincinv(a_t, b_t, 1e-12))
    high = max(special.betaincinv(a_c, b_c, 1 - 1e-12), special.betaincinv(a_t, b_t, 1 - 1e-12))
    p = np.linspace(low, high, grid)
    with np.errstate(divide="ignore"):
        log_pdf_t = (a_t - 1) * np.log(p) + (b_t - 1) * np.log1p(-p) - special.betaln(a_t, b_t)
    integrand = np.exp(log_pdf_t) * special.betainc(a_c, b_c, p)
    value = integrate.simpson(integrand, x=p)
    return float(min(1.0, max(0.0, value)))


def srm_pvalue(counts: Sequence[float], expected: Sequence[float]) -> float | None:
    """Chi-square goodness-of-fit p-value of observed counts against expected counts."""
    total = sum(counts)
    if total == 0 or sum(expected) == 0:
        return None
    keep = [i for i, e in enumerate(expected) if e > 0]
    observed = np.array([counts[i] for i in keep], dtype=float)
    exp = np.array([expected[i] for i in keep], dtype=float)
    exp = exp * observed.sum() / exp.sum()
    if len(keep) < 2:
        return None
    return float(stats.chisquare(observed, exp).pvalue)


def msprt(diff: float, variance: float, tau: float, alpha: float = 0.05
          ) -> tuple[float, float, float]:
    """Always-valid (p-value, low, high) for a difference with estimate variance `variance`.

    The normal-mixture likelihood ratio with mixing variance tau**2 is
    L = sqrt(V / (V + tau^2)) * exp(diff^2 tau^2 / (2 V (V + tau^2))); p = min(1, 1/L), and
    the interval is every theta for which the same test does not reject. Both hold at any
    number of looks (Ville's inequality); tau is the tuning parameter: the effect size the
    test is most sensitive to.
    """
    if variance <= 0:
        return 1.0, -math.inf, math.inf
    v, t2 = variance, tau * tau
    log_lr = 0.5 * math.log(v / (v + t2)) + diff * diff * t2 / (2 * v * (v + t2))
    p_value = 1.0 if log_lr <= 0 else min(1.0, math.exp(-log_lr))
    half = math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))
    return p_value, diff - half, diff + half


def msprt_pvalue_array(diff: np.ndarray, variance: np.ndarray, tau: float) -> np.ndarray:
    """msprt's p-value over arrays (for simulations)."""
    v, t2 = np.maximum(variance, 1e-300), tau * tau
    log_lr = 0.5 * np.log(v / (v + t2)) + diff * diff * t2 / (2 * v * (v + t2))
    return np.minimum(1.0, np.exp(-np.maximum(log_lr, 0.0)))


def required_sample_size(p_base: float, mde: float, alpha: float = 0.05,
                         power: float = 0.8) -> int | None:
    """Users per variant to detect p_base -> p_base + mde with a two-sided test at this power;
    None when the rates are outside (0, 1)."""
    p_new = p_base + mde
    if not (0 < p_base < 1 and 0 < p_new < 1) or mde == 0:
        return None
    return math.ceil(sample_size_unrounded(p_base, mde, alpha, power))


def sample_size_unrounded(p_base: float, mde: float, alpha: float, power: float) -> float:
    """Solves power(n) = power for Cohen's h (arcsine) effect size, both tails counted, as
    statsmodels' NormalIndPower does."""
    h = abs(2 * math.asin(math.sqrt(p_base + mde)) - 2 * math.asin(math.sqrt(p_base)))
    z = _z(alpha)

    def power_gap(n: float) -> float:
        shift = h * math.sqrt(n / 2)
        return _normal_cdf(shift - z) + _normal_cdf(-z - shift) - power

    return optimize.brentq(power_gap, 1e-6, 1e12, xtol=1e-10, rtol=1e-14)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control over k comparisons)."""
    k = len(p_values)
    order = sorted(range(k), key=lambda i: p_values[i])
    adjusted = [0.0] * k
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
