"""Always-valid values over an experiment's life (Johari, Koomen, Pekelis and Walsh, "Always
Valid Inference", 2017): the always-valid p-value is the running minimum of the mSPRT's
1/Lambda over every look, and the always-valid interval the running intersection of each
look's interval. Each look alone is valid at that look; only the running values are valid
at every look at once, so they are what decides. Pure: no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ml_api.stats.inference import holm


@dataclass(frozen=True)
class Look:
    """One look at one comparison: the decisive test, its estimate, mSPRT p-value and
    always-valid interval at that moment (`at` is None for the look being taken now)."""

    at: datetime | None
    test: str
    estimate: float
    p_value: float
    low: float
    high: float


def running_values(looks: list[Look]) -> dict | None:
    """The running minimum p-value, the running intersection of the intervals, and the
    estimate of the look where the minimum was reached (the earliest on ties). None
    without looks. An empty intersection (low > high) is reported as it is: it says the
    model of the data does not hold, and the p-value is then already below alpha."""
    if not looks:
        return None
    best = min(looks, key=lambda look: look.p_value)  # min keeps the first of equal values
    low = max(look.low for look in looks)
    high = min(look.high for look in looks)
    return {"test": looks[-1].test, "looks": len(looks), "p_value": best.p_value,
            "estimate": best.estimate, "absolute_lift_ci": [low, high],
            "minimum_at": None if best.at is None else best.at.isoformat()}


def adjust_over_family(running: list[dict], family: int) -> None:
    """Set each running block's `p_value_adjusted`, Holm over the experiment's whole family
    of `family` declared comparisons: one without values yet counts as p = 1, so a
    comparison decided before the others have data meets the same bar as after."""
    padded = [r["p_value"] for r in running] + [1.0] * max(family - len(running), 0)
    for value, adjusted in zip(running, holm(padded)):
        value["p_value_adjusted"] = adjusted
