"""CUPED: the effect on a metric adjusted for a covariate measured before exposure.

With y a uid's metric and x its pre-exposure covariate, the adjusted effect is the
treatment coefficient of the least-squares fit y ~ 1 + treatment + (x - mean x), i.e. the
difference of group means minus theta times the difference of covariate means, where theta
is the pooled within-group slope. Its variance is the classical ANCOVA one,
sigma^2 * (1/n0 + 1/n1 + (mean x1 - mean x0)^2 / Sxx), with sigma^2 the residual variance
on n - 3 degrees of freedom (Deng, Xu, Kohavi and Walker, 2013). Everything comes from six
sums per variant, so results stay O(1) to read. Pure: no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from ml_api.stats import inference as st


@dataclass(frozen=True)
class CovariateSums:
    """One variant's sums over its uids: count, metric y, covariate x, and their products."""

    n: int = 0
    y: float = 0.0
    y2: float = 0.0
    x: float = 0.0
    x2: float = 0.0
    xy: float = 0.0

    def centred(self) -> tuple[float, float, float]:
        """(Sxx, Sxy, Syy): the sums of squares and products about this variant's means."""
        n = self.n
        return (self.x2 - self.x * self.x / n, self.xy - self.x * self.y / n,
                self.y2 - self.y * self.y / n)


def cuped_effect(control: CovariateSums, treatment: CovariateSums, alpha: float = 0.05,
                 tau: float | None = None) -> dict | None:
    """The unadjusted and covariate-adjusted effect of treatment over control, each with its
    variance and fixed-horizon interval, the always-valid mSPRT p-value and interval on the
    adjusted effect (with `tau`), and the variance-reduction factor (unadjusted variance over
    adjusted). None when there are too few uids or the covariate does not vary."""
    n0, n1 = control.n, treatment.n
    if min(n0, n1) < 2 or n0 + n1 < 4:
        return None
    sxx0, sxy0, syy0 = control.centred()
    sxx1, sxy1, syy1 = treatment.centred()
    sxx = sxx0 + sxx1
    if sxx <= 0:
        return None
    theta = (sxy0 + sxy1) / sxx
    y0, y1 = control.y / n0, treatment.y / n1
    x0, x1 = control.x / n0, treatment.x / n1
    adjusted = (y1 - y0) - theta * (x1 - x0)
    residual = (syy0 + syy1) - theta * (sxy0 + sxy1)  # least-squares residual sum
    sigma2 = max(residual, 0.0) / (n0 + n1 - 3)
    var_adjusted = sigma2 * (1 / n0 + 1 / n1 + (x1 - x0) ** 2 / sxx)
    var_unadjusted = syy0 / (n0 - 1) / n0 + syy1 / (n1 - 1) / n1  # Welch's
    z = float(stats.norm.isf(alpha / 2))
    half = z * math.sqrt(var_adjusted)
    result = {
        "theta": theta,
        "unadjusted": {"estimate": y1 - y0, "variance": var_unadjusted},
        "adjusted": {"estimate": adjusted, "variance": var_adjusted,
                     "ci": [adjusted - half, adjusted + half]},
        "variance_reduction_factor": (var_unadjusted / var_adjusted
                                      if var_adjusted > 0 else math.inf),
    }
    if tau is not None:
        p_value, low, high = st.msprt(adjusted, var_adjusted, tau, alpha)
        result["sequential"] = {"method": "mSPRT", "tau": tau, "p_value": p_value,
                                "absolute_lift_ci": [low, high]}
    return result
