"""The decision of an experiment from the running always-valid values of its comparisons.

Each comparison's `running` block (stats/always_valid.py) holds the running minimum p-value
over every look, Holm-adjusted across the comparisons, and the running intersection of the
intervals. Both only move one way, so a winner found stays found. A decision once reached is
kept in the experiment (`config["decision"]`, written with an audit entry) and shown as it
was, unless a sample-ratio mismatch or a guardrail reverses it, which the audit log records.
Pure: no I/O.
"""
from __future__ import annotations

from ml_api.domain.experiments import Experiment

SRM_THRESHOLD = 0.001
TESTS = {"sequential": "sequential test", "cuped": "CUPED-adjusted sequential test"}


def decisive_test(experiment: Experiment) -> str:
    """The test that decides, declared when the experiment is created so it never changes
    between looks: CUPED's adjusted test when the experiment declares a covariate."""
    return "cuped" if experiment.setting("cuped") else "sequential"


def decide(experiment: Experiment, summaries: dict, comparisons: dict, srm_p: float | None,
           required: int | None) -> dict:
    """The decision: which variant wins, or why the experiment keeps running."""
    alpha = experiment.setting("alpha")
    control = experiment.control.name
    if srm_p is not None and srm_p < SRM_THRESHOLD:
        return {"outcome": "sample_ratio_mismatch", "winner": None, "test": None,
                "message": f"sample ratio mismatch (p = {srm_p:.2g}): do not trust these results"}
    reached = experiment.config.get("decision")
    if reached:
        return dict(reached)
    running = {n: c["running"] for n, c in comparisons.items() if c.get("running")}
    used = TESTS[decisive_test(experiment)]
    significant = {n: r for n, r in running.items() if r["p_value_adjusted"] <= alpha}
    better = {n: r for n, r in significant.items() if r["estimate"] > 0}
    if better:
        winner = max(better, key=lambda n: better[n]["estimate"])
        return {"outcome": "winner", "winner": winner, "test": used,
                "message": f"{winner} wins against {control} ({used}, Holm-adjusted, "
                           "running minimum over every look)"}
    if significant and len(significant) == len(comparisons):
        return {"outcome": "winner", "winner": control, "test": used,
                "message": f"{control} wins: every challenger is significantly worse ({used})"}
    sizes = [summaries[n]["exposures"] for n in summaries]
    if required and min(sizes) >= required:
        return {"outcome": "no_significant_difference", "winner": None, "test": used,
                "message": "the planned sample size is reached without a significant difference"}
    return {"outcome": "keep_running", "winner": None, "test": used,
            "message": "not enough evidence yet; keep running"}
