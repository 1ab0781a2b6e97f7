"""Experiment results from counters: per-variant summaries, comparisons against the control,
the sample-ratio check, sample size, and the decision. Pure: no I/O.

Decisions use the always-valid mSPRT p-values, Holm-adjusted across the comparisons with the
control; the fixed-horizon p-values are reported for information only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from ml_api.domain.experiments import Experiment
from ml_api.stats import inference as st
from ml_api.stats.always_valid import Look, adjust_over_family, running_values
from ml_api.stats.cuped import CovariateSums, cuped_effect
from ml_api.stats.decision import SRM_THRESHOLD, decide, decisive_test


@dataclass(frozen=True)
class MetricSums:
    """A variant's counters for one metric, summed over its shards."""

    users: int = 0          # users whose total is positive (converting uids)
    events: int = 0
    total: float = 0.0      # sum over users of their total
    total_sq: float = 0.0   # sum over users of their total squared


POWER = 0.8


def _summary(n: int, sums: MetricSums, alpha: float) -> dict:
    rate = sums.users / n if n else None
    mean = sums.total / n if n else None
    variance = ((sums.total_sq - sums.total ** 2 / n) / (n - 1)) if n > 1 else None
    low, high = st.wilson_interval(sums.users, n, alpha) if n else (None, None)
    return {"exposures": n, "converting_uids": sums.users, "events": sums.events,
            "value_sum": sums.total, "mean": mean,
            "variance": None if variance is None else max(variance, 0.0),
            "conversion_rate": rate, "conversion_rate_ci": [low, high]}


def _estimate(summary: dict, metric_type: str) -> tuple[float, float]:
    """(estimate, variance of the estimate) of a variant's primary metric."""
    n = summary["exposures"]
    if metric_type == "conversion":
        p = summary["conversion_rate"]
        return p, p * (1 - p) / n
    return summary["mean"], summary["variance"] / n


def _comparison(control: dict, treatment: dict, experiment: Experiment) -> dict:
    metric_type = experiment.setting("metric_type")
    alpha = experiment.setting("alpha")
    tau = experiment.setting("tau") or experiment.setting("mde")
    est_c, var_c = _estimate(control, metric_type)
    est_t, var_t = _estimate(treatment, metric_type)
    diff, low, high = st.absolute_lift(est_c, var_c, est_t, var_t, alpha)
    relative = st.relative_lift(est_c, var_c, est_t, var_t, alpha)
    if metric_type == "conversion":
        _, p_value = st.two_proportion_ztest(control["converting_uids"], control["exposures"],
                                             treatment["converting_uids"], treatment["exposures"])
        test = "two_proportion_z"
        beat = st.prob_to_beat(control["converting_uids"], control["exposures"],
                               treatment["converting_uids"], treatment["exposures"])
    else:
        _, _, p_value = st.welch_ttest(est_c, control["variance"], control["exposures"],
                                       est_t, treatment["variance"], treatment["exposures"])
        test, beat = "welch_t", None
    seq_p, seq_low, seq_high = st.msprt(diff, var_c + var_t, tau, alpha)
    # The decision's own figures come first; the fixed-horizon ones are for information.
    return {
        "lift": {"absolute": diff, "relative": None if relative is None else relative[0]},
        "sequential": {"method": "mSPRT", "tau": tau, "p_value": seq_p,
                       "absolute_lift_ci": [seq_low, seq_high]},
        "fixed_horizon": {"test": test, "p_value": p_value, "absolute_lift_ci": [low, high],
                          "relative_lift_ci": None if relative is None
                          else [relative[1], relative[2]]},
        "prob_to_beat_control": beat,
    }


def _required_per_variant(experiment: Experiment, control: dict) -> int | None:
    mde, alpha = experiment.setting("mde"), experiment.setting("alpha")
    if control["exposures"] < 2:
        return None
    if experiment.setting("metric_type") == "conversion":
        return st.required_sample_size(control["conversion_rate"], mde, alpha, POWER)
    sd = math.sqrt(control["variance"] or 0.0)
    if sd == 0 or mde == 0:
        return None
    z = stats.norm.isf(alpha / 2) + stats.norm.ppf(POWER)
    return math.ceil(2 * (z * sd / mde) ** 2)


def _reduction(experiment: Experiment, comparisons: dict) -> float | None:
    """The variance-reduction factor the sample size is divided by: with CUPED declared, the
    smallest observed over the comparisons (each needs its sample), else None."""
    factors = [c["cuped"]["variance_reduction_factor"] for c in comparisons.values()
               if c["cuped"]["applied"]]
    if not experiment.setting("cuped") or not factors or not all(
            math.isfinite(f) and f > 0 for f in factors):
        return None
    return min(factors)


def _cuped(experiment: Experiment, covariates: dict[str, CovariateSums] | None,
           name: str) -> dict:
    """The comparison adjusted for the uids' pre-exposure covariate, uids without one kept
    (cuped.py), when the experiment declares a covariate or some uid sent one."""
    covariates = covariates or {}
    if not experiment.setting("cuped") and not any(c.n - c.missing
                                                   for c in covariates.values()):
        return {"applied": False, "reason": "no covariates were sent"}
    effect = cuped_effect(covariates.get(experiment.control.name, CovariateSums()),
                          covariates.get(name, CovariateSums()), experiment.setting("alpha"),
                          experiment.setting("tau") or experiment.setting("mde"))
    if effect is None:
        return {"applied": False, "reason": "too few uids for the regression"}
    return {"applied": True, **effect}


def current_look(comparison: dict, test: str) -> Look | None:
    """The decisive test's values in this comparison as it stands now, if it has them."""
    block = comparison["cuped"] if test == "cuped" else comparison
    if "sequential" not in block:
        return None
    estimate = block["adjusted"]["estimate"] if test == "cuped" else block["lift"]["absolute"]
    low, high = block["sequential"]["absolute_lift_ci"]
    return Look(None, test, estimate, block["sequential"]["p_value"], low, high)


def _add_running(comparisons: dict, test: str, looks: dict[str, list[Look]], family: int,
                 include_now: bool) -> None:
    """Each comparison's running values over its stored looks (and the current one with
    `include_now`), the running p-values Holm-adjusted over the `family` of challengers."""
    for name, comparison in comparisons.items():
        now = current_look(comparison, test) if include_now else None
        comparison["running"] = running_values(looks.get(name, []) + ([now] if now else []))
    adjust_over_family([c["running"] for c in comparisons.values() if c["running"]], family)


def experiment_results(experiment: Experiment, exposures: dict[str, int],
                       expected: dict[str, float], sums: dict[str, MetricSums],
                       covariates: dict[str, CovariateSums] | None = None,
                       looks: dict[str, list[Look]] | None = None,
                       include_now: bool = True) -> dict:
    """The whole results document of an experiment from its counters: per-variant
    summaries, comparisons against the control (each also adjusted for a covariate with
    CUPED), the running always-valid values over the stored
    `looks` (and this one, with `include_now`), the sample-ratio check, sample size,
    decision."""
    alpha = experiment.setting("alpha")
    names = [v.name for v in experiment.variants]
    summaries = {name: _summary(exposures.get(name, 0), sums.get(name, MetricSums()), alpha)
                 for name in names}
    control_name = names[0]
    control = summaries[control_name]

    comparable = [n for n in names[1:]
                  if summaries[n]["exposures"] > 1 and control["exposures"] > 1]
    comparisons = {n: {**_comparison(control, summaries[n], experiment),
                       "cuped": _cuped(experiment, covariates, n)}
                   for n in comparable}
    if comparisons:
        fixed_adj = st.holm([c["fixed_horizon"]["p_value"] for c in comparisons.values()])
        seq_adj = st.holm([c["sequential"]["p_value"] for c in comparisons.values()])
        for comparison, f, s in zip(comparisons.values(), fixed_adj, seq_adj):
            comparison["fixed_horizon"]["p_value_adjusted"] = f
            comparison["sequential"]["p_value_adjusted"] = s
        adjusted = [c["cuped"] for c in comparisons.values() if c["cuped"]["applied"]]
        for cuped, p_value in zip(adjusted, st.holm([c["sequential"]["p_value"]
                                                     for c in adjusted])):
            cuped["sequential"]["p_value_adjusted"] = p_value
    _add_running(comparisons, decisive_test(experiment), looks or {},
                 len(names) - 1, include_now)

    srm_p = None if experiment.strategy == "shadow" else st.srm_pvalue(
        [exposures.get(n, 0) for n in names], [expected.get(n, 0.0) for n in names])
    unadjusted = _required_per_variant(experiment, control)
    factor = _reduction(experiment, comparisons)
    required = (math.ceil(unadjusted / factor) if unadjusted and factor
                else unadjusted)
    active = [n for n in names if experiment.shares.get(n, 0) > 0] or names
    smallest = min(summaries[n]["exposures"] for n in active)
    return {
        "experiment": experiment.name, "status": experiment.status,
        "strategy": experiment.strategy, "metric": experiment.metric,
        "metric_type": experiment.setting("metric_type"), "alpha": alpha,
        "control": control_name, "correction": "holm",
        "variants": [{"name": n, "model": experiment.variant(n).model_key,
                      "share": experiment.shares.get(n), **summaries[n]} for n in names],
        "comparisons": [{"variant": n, "against": control_name, **c}
                        for n, c in comparisons.items()],
        "srm": {"p_value": srm_p, "threshold": SRM_THRESHOLD,
                "mismatch": srm_p is not None and srm_p < SRM_THRESHOLD,
                "expected": {n: expected.get(n, 0.0) for n in names}},
        "sample_size": {"mde": experiment.setting("mde"), "power": POWER,
                        "per_variant": required, "unadjusted_per_variant": unadjusted,
                        "variance_reduction_factor": factor,
                        "progress": None if not required else min(1.0, smallest / required)},
        "decision": decide(experiment, summaries, comparisons, srm_p, required),
    }


def effect_over_time(experiment: Experiment, series: list, max_points: int = 120) -> list[dict]:
    """The decision's effect as it stood at each snapshot: for each challenger, the absolute
    lift against the control and its always-valid interval, which narrows as data comes in.
    `series`: (time, exposures, sums) per snapshot, oldest first; at most `max_points`
    snapshots, evenly spaced and the last always among them."""
    if len(series) > max_points:
        step = (len(series) - 1) / (max_points - 1)
        series = [series[round(i * step)] for i in range(max_points)]
    alpha, metric_type = experiment.setting("alpha"), experiment.setting("metric_type")
    tau = experiment.setting("tau") or experiment.setting("mde")
    names = [v.name for v in experiment.variants]
    points = []
    for at, exposures, sums in series:
        summaries = {n: _summary(exposures.get(n, 0), sums.get(n, MetricSums()), alpha)
                     for n in names}
        control = summaries[names[0]]
        for name in names[1:]:
            if min(control["exposures"], summaries[name]["exposures"]) < 2:
                continue
            est_c, var_c = _estimate(control, metric_type)
            est_t, var_t = _estimate(summaries[name], metric_type)
            _, low, high = st.msprt(est_t - est_c, var_c + var_t, tau, alpha)
            points.append({"at": at.isoformat(), "variant": name,
                           "exposures": control["exposures"] + summaries[name]["exposures"],
                           "estimate": est_t - est_c, "ci": [low, high]})
    return points
