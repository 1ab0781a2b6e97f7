"""The decision of a shadow experiment: the paired test on labels. Every labelled request
was scored by the primary model and by each shadow model, so the paired always-valid test
on the per-request log-loss differences (model_quality.paired_log_loss) says whether a
shadow model is better, worse, or not yet known. As for A/B comparisons, its running
minimum p-value and running interval over every look decide (always_valid.py), Holm-adjusted
across the shadow models, and a reached decision is kept. Pure: no I/O.
"""
from __future__ import annotations

from ml_api.domain.experiments import Experiment
from ml_api.stats.always_valid import Look, adjust_over_family, running_values

PAIRED = "paired"
TEST = "paired log-loss sequential test"


def paired_look(block: dict | None) -> Look | None:
    """The paired test as it stands now: the shadow's mean log-loss minus the primary's
    (negative: the shadow is better), its mSPRT p-value and interval."""
    if not block:
        return None
    low, high = block["sequential"]["ci"]
    return Look(None, PAIRED, block["difference"], block["sequential"]["p_value"], low, high)


def shadow_decision(experiment: Experiment, paired: dict, looks: dict[str, list[Look]],
                    include_now: bool = True) -> dict:
    """Adds the running values to each shadow's paired block and returns the decision:
    the best shadow model significantly better than the primary wins; the primary wins
    when every shadow model is significantly worse; otherwise keep running."""
    alpha, primary = experiment.setting("alpha"), experiment.control.name
    running = {}
    for name, block in paired.items():
        now = paired_look(block) if include_now else None
        value = running_values(looks.get(name, []) + ([now] if now else []))
        if block is not None:
            block["running"] = value
        if value is not None:
            running[name] = value
    adjust_over_family(list(running.values()), len(experiment.variants) - 1)
    if experiment.config.get("decision"):
        return dict(experiment.config["decision"])
    significant = {n: r for n, r in running.items() if r["p_value_adjusted"] <= alpha}
    better = {n: r for n, r in significant.items() if r["estimate"] < 0}
    if better:
        winner = min(better, key=lambda n: better[n]["estimate"])
        return {"outcome": "winner", "winner": winner, "test": TEST,
                "message": f"shadow model {winner} is better than {primary}: lower log-loss "
                           f"on the same labelled requests ({TEST}, Holm-adjusted, running "
                           "minimum over every look)"}
    if significant and len(significant) == len(experiment.variants) - 1:
        return {"outcome": "winner", "winner": primary, "test": TEST,
                "message": f"{primary} wins: every shadow model has a significantly higher "
                           f"log-loss ({TEST})"}
    return {"outcome": "keep_running", "winner": None, "test": TEST,
            "message": "not enough labels yet to tell the shadow models from the primary; "
                       "keep running"}
