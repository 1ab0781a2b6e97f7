"""Canary ramps: the challenger's share at each step, the guards that roll it back, and when
it moves to the next step. Pure: the supervisor reads the traffic and applies the action.

A canary's settings (`specs.validate_canary`): `steps` (the challenger's percentages),
`hold_seconds` at each step, and the guards `max_error_rate` and `max_p99_ms`, judged once
the step has seen `min_requests` of the challenger's requests. Traffic comes from
`traffic.TrafficRecorder`, merged across workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ml_api.experiments.traffic import percentile_upper_bound

NO_TRAFFIC = {"requests": 0, "errors": 0, "buckets": {}}


def canary_weights(k: int, challenger_percent: float) -> list[float]:
    """Control keeps 100 - p percent, the challenger (second variant) gets p."""
    return [100.0 - challenger_percent, challenger_percent] + [0.0] * (k - 2)


@dataclass(frozen=True)
class CanaryAction:
    """What the supervisor does: roll back to the control, or move to `step`."""

    kind: str      # "rollback" or "step"
    reason: str
    step: int = 0


def breached_guards(canary: dict, seen: dict) -> list[str]:
    """The guards the challenger's traffic crosses, once there is enough of it."""
    if seen["requests"] < canary["min_requests"] or not seen["requests"]:
        return []
    error_rate = seen["errors"] / seen["requests"]
    p99 = percentile_upper_bound(seen["buckets"], 0.99)
    broken = []
    if error_rate > canary["max_error_rate"]:
        broken.append(f"error rate {error_rate:.3f} > {canary['max_error_rate']}")
    if p99 is not None and p99 > canary["max_p99_ms"]:
        broken.append(f"p99 <= {p99} ms bucket > {canary['max_p99_ms']} ms")
    return broken


def next_action(canary: dict, step: int, since: datetime, now: datetime,
                seen: dict) -> CanaryAction | None:
    """The action for a canary at `step` since `since`, given the challenger's traffic
    `seen` since then; None to hold."""
    broken = breached_guards(canary, seen)
    if broken:
        return CanaryAction("rollback", "canary guard crossed: " + "; ".join(broken))
    if (step < len(canary["steps"]) - 1 and now - since >= timedelta(seconds=canary["hold_seconds"])
            and seen["requests"] >= canary["min_requests"]):
        percent = canary["steps"][step + 1]
        return CanaryAction("step", f"canary step {step + 1}: challenger at {percent}%",
                            step + 1)
    return None
