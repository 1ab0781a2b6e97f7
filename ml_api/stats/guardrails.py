"""Guardrails: metrics an experiment must not make worse, whatever its primary metric says.

Each guardrail names a metric, the direction that is worse ("higher" or "lower") and a
tolerance: the largest harm accepted, as a difference of the metric's mean per exposed uid.
For each challenger against the control the harm is estimated with its always-valid
(mSPRT) interval; the guardrail is breached once the whole interval lies beyond the
tolerance. The interval covers the true harm at every look with probability 1 - alpha, so
a guardrail that holds is breached, ever, with probability at most alpha/2 per challenger.
Pure: no I/O.
"""
from __future__ import annotations

from ml_api.domain.experiments import Experiment
from ml_api.stats import inference as st
from ml_api.stats.results import MetricSums


def _mean_and_variance(n: int, sums: MetricSums) -> tuple[float, float]:
    """The metric's mean per exposed uid and the variance of that mean."""
    mean = sums.total / n
    variance = max(sums.total_sq - sums.total * sums.total / n, 0.0) / (n - 1) / n
    return mean, variance


def guardrail_checks(experiment: Experiment, exposures: dict[str, int],
                     sums_by_metric: dict[str, dict[str, MetricSums]]) -> list[dict]:
    """One check per guardrail and challenger: the harm (worse direction positive), its
    always-valid interval, and whether the guardrail is breached."""
    alpha = experiment.setting("alpha")
    control = experiment.control.name
    checks = []
    for guardrail in experiment.setting("guardrails") or []:
        metric, tolerance = guardrail["metric"], guardrail["tolerance"]
        sign = 1.0 if guardrail["worse"] == "higher" else -1.0
        sums = sums_by_metric.get(metric, {})
        for variant in experiment.variants[1:]:
            n_c, n_t = exposures.get(control, 0), exposures.get(variant.name, 0)
            check = {"metric": metric, "variant": variant.name, "against": control,
                     "worse": guardrail["worse"], "tolerance": tolerance, "harm": None,
                     "harm_ci": [None, None], "breached": False}
            if min(n_c, n_t) >= 2:
                mean_c, var_c = _mean_and_variance(n_c, sums.get(control, MetricSums()))
                mean_t, var_t = _mean_and_variance(n_t, sums.get(variant.name, MetricSums()))
                harm = sign * (mean_t - mean_c)
                # The mixture's scale is fixed in advance: the tolerance, or the mde without one.
                tau = tolerance or experiment.setting("tau") or experiment.setting("mde")
                _, low, high = st.msprt(harm, var_c + var_t, tau, alpha)
                check.update(harm=harm, harm_ci=[low, high], breached=low > tolerance)
            checks.append(check)
    return checks
