"""CUPED: the effect on a metric adjusted for a covariate measured before exposure.

With y a uid's metric, x its pre-exposure covariate and M = 1 when the uid came without
one, the adjusted effect is the treatment coefficient of the least-squares fit
y ~ 1 + treatment + x' + M, where x' is x with the missing values replaced by the observed
mean (mean imputation with a missing indicator: Statsig's and Eppo's treatment of missing
pre-period data; every uid stays in). Its variance is the OLS one, sigma^2 times the
treatment's entry of (X'X)^-1, with sigma^2 the residual variance on n - rank degrees of
freedom, and its fixed-horizon interval uses the t quantile on those degrees of freedom,
as statsmodels' OLS does. The unadjusted effect is the same model without x' and M
(y ~ 1 + treatment: the pooled-variance difference of means), so the variance-reduction
factor compares two variances of one model (Deng, Xu, Kohavi and Walker, 2013). Everything
comes from a few sums per variant, so results stay O(1) to read. Pure: no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from ml_api.stats import inference as st

COLLINEAR = 1e-10  # a column whose residual sum of squares is below this share is dropped


@dataclass(frozen=True)
class CovariateSums:
    """One variant's sums: n uids and their metric y (y2: squares), all of them; x, x2 and
    xy over the uids that came with a covariate; `missing` uids without one and the sum of
    their y."""

    n: int = 0
    y: float = 0.0
    y2: float = 0.0
    x: float = 0.0
    x2: float = 0.0
    xy: float = 0.0
    missing: int = 0
    y_missing: float = 0.0


def _gram(control: CovariateSums, treatment: CovariateSums) -> tuple[np.ndarray, np.ndarray,
                                                                      float, int]:
    """(X'X, X'y, y'y, n) of the design [1, treatment, x', M], with x' and y centred (on the
    observed covariates' mean and on y's mean) to keep the sums well conditioned; centring
    moves only the intercept's and M's coefficients."""
    both = (control, treatment)
    n = sum(s.n for s in both)
    observed = n - sum(s.missing for s in both)
    cx = sum(s.x for s in both) / observed if observed else 0.0
    cy = sum(s.y for s in both) / n
    gram, xty, yty = np.zeros((4, 4)), np.zeros(4), 0.0
    for t, s in enumerate(both):
        seen = s.n - s.missing
        sx = s.x - seen * cx
        sxx = s.x2 - 2 * cx * s.x + seen * cx * cx
        sxy = s.xy - cx * (s.y - s.y_missing) - cy * sx
        sy, sym = s.y - s.n * cy, s.y_missing - s.missing * cy
        row = np.array([[s.n, t * s.n, sx, s.missing], [t * s.n, t * s.n, t * sx, t * s.missing],
                        [sx, t * sx, sxx, 0.0], [s.missing, t * s.missing, 0.0, s.missing]])
        gram += row
        xty += [sy, t * sy, sxy, sym]
        yty += s.y2 - 2 * cy * s.y + s.n * cy * cy
    return gram, xty, yty, n


def _independent(gram: np.ndarray) -> list[int]:
    """The columns kept, in order: each whose residual sum of squares on the kept ones is
    more than COLLINEAR of its own (a missing indicator that is all 0 or all 1, a covariate
    that does not vary, go)."""
    kept: list[int] = []
    for j in range(gram.shape[0]):
        if gram[j, j] <= 0:
            continue
        if kept:
            sub = gram[np.ix_(kept, kept)]
            cross = gram[kept, j]
            residual = gram[j, j] - cross @ np.linalg.solve(sub, cross)
        else:
            residual = gram[j, j]
        if residual > COLLINEAR * gram[j, j]:
            kept.append(j)
    return kept


def _treatment_fit(gram: np.ndarray, xty: np.ndarray, yty: float, n: int, kept: list[int]
                   ) -> tuple[float, float, int, np.ndarray] | None:
    """(coefficient, variance, residual degrees of freedom) of the treatment column in the
    fit on the `kept` columns, and the coefficients."""
    df = n - len(kept)
    if 1 not in kept or df < 1:
        return None
    inverse = np.linalg.inv(gram[np.ix_(kept, kept)])
    beta = inverse @ xty[kept]
    residual = max(yty - float(beta @ xty[kept]), 0.0)
    position = kept.index(1)
    return float(beta[position]), residual / df * float(inverse[position, position]), df, beta


def cuped_effect(control: CovariateSums, treatment: CovariateSums, alpha: float = 0.05,
                 tau: float | None = None) -> dict | None:
    """The unadjusted and covariate-adjusted effect of treatment over control, each with its
    OLS variance, the adjusted one's t interval, the always-valid mSPRT p-value and interval
    on the adjusted effect (with `tau`), and the variance-reduction factor (unadjusted
    variance over adjusted). None with fewer than two uids in either variant or no degree of
    freedom left."""
    if min(control.n, treatment.n) < 2:
        return None
    gram, xty, yty, n = _gram(control, treatment)
    kept = _independent(gram)
    adjusted = _treatment_fit(gram, xty, yty, n, kept)
    unadjusted = _treatment_fit(gram, xty, yty, n, [c for c in kept if c < 2])
    if adjusted is None or unadjusted is None:
        return None
    estimate, variance, df, beta = adjusted
    half = float(special.stdtrit(df, 1 - alpha / 2)) * math.sqrt(variance)  # t quantile
    result = {
        "model": "ols", "degrees_of_freedom": df,
        "missing": control.missing + treatment.missing,
        "theta": float(beta[kept.index(2)]) if 2 in kept else None,
        "unadjusted": {"estimate": unadjusted[0], "variance": unadjusted[1]},
        "adjusted": {"estimate": estimate, "variance": variance,
                     "ci": [estimate - half, estimate + half]},
        "variance_reduction_factor": unadjusted[1] / variance if variance > 0 else math.inf,
    }
    if tau is not None:
        p_value, low, high = st.msprt(estimate, variance, tau, alpha)
        result["sequential"] = {"method": "mSPRT", "tau": tau, "p_value": p_value,
                                "absolute_lift_ci": [low, high]}
    return result
