"""How each strategy sets the weights of new uids. Pure: counts in, weights out.

Every strategy ends in weights for the hash assignment, so stickiness, exposure recording
and the sample-ratio check work the same for all of them:
- hash: the configured weights;
- epsilon_greedy / thompson: bandit weights from the recorded outcomes, with a floor;
- shadow: the first variant answers everyone, the others only predict alongside;
- canary: the challenger's weight follows the ramp step.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from ml_api.experiments.canary import canary_weights

BANDITS = ("epsilon_greedy", "thompson")


def with_floor(probabilities: Sequence[float], min_share: float) -> list[float]:
    """Mix with uniform so that every arm keeps at least min_share (when k * min_share <= 1)."""
    k = len(probabilities)
    floor = min(max(min_share, 0.0), 1.0 / k)
    return [floor + (1 - k * floor) * p for p in probabilities]


def epsilon_greedy_weights(successes: Sequence[int], trials: Sequence[int], epsilon: float,
                           min_share: float) -> list[float]:
    """Best observed rate gets 1 - epsilon on top of an even epsilon split (ties share it)."""
    k = len(trials)
    rates = [(s + 1) / (n + 2) for s, n in zip(successes, trials)]  # Laplace: no 0/0
    best = max(rates)
    leaders = [i for i, r in enumerate(rates) if r == best]
    probabilities = [epsilon / k + ((1 - epsilon) / len(leaders) if i in leaders else 0.0)
                     for i in range(k)]
    return with_floor(probabilities, min_share)


def thompson_weights(successes: Sequence[int], trials: Sequence[int], min_share: float,
                     draws: int = 20_000, seed: int = 0) -> list[float]:
    """P(arm is best) under Beta(1 + s, 1 + n - s) posteriors, by Monte Carlo, with a floor.

    Assigning new uids in these proportions is Thompson sampling, batched per refresh.
    """
    rng = np.random.default_rng(seed)
    samples = np.column_stack([rng.beta(1 + s, 1 + n - s, size=draws)
                               for s, n in zip(successes, trials)])
    wins = np.bincount(samples.argmax(axis=1), minlength=len(trials)) / draws
    return with_floor(wins.tolist(), min_share)


def shadow_weights(k: int) -> list[float]:
    """Everyone gets the primary (first variant); the others only predict in its shadow."""
    return [1.0] + [0.0] * (k - 1)


def with_live_weights(experiment, exposures: dict[str, int] | None = None,
                      converters: dict[str, int] | None = None):
    """The experiment with the weights its strategy sets now (unchanged for "hash")."""
    names = [v.name for v in experiment.variants]
    k = len(names)
    if experiment.strategy in BANDITS:
        trials = [(exposures or {}).get(n, 0) for n in names]
        successes = [(converters or {}).get(n, 0) for n in names]
        min_share = experiment.setting("min_share")
        if experiment.strategy == "epsilon_greedy":
            weights = epsilon_greedy_weights(successes, trials, experiment.setting("epsilon"),
                                             min_share)
        else:
            weights = thompson_weights(successes, trials, min_share)
    elif experiment.strategy == "shadow":
        weights = shadow_weights(k)
    elif experiment.strategy == "canary":
        canary = experiment.setting("canary") or {}
        steps = canary.get("steps") or [0]
        step = min(int(experiment.config.get("canary_step", 0)), len(steps) - 1)
        weights = canary_weights(k, float(steps[step]))
    else:
        return experiment
    return replace(experiment, live_weights=tuple(weights))
