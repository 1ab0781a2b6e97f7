"""A/A study: how often each test declares a difference that does not exist, when results are
looked at continuously. Both arms convert at the same rate; every `look_every` users per arm
the naive fixed-horizon z-test and the mSPRT are checked, and an experiment counts as a false
positive if any look rejects."""
from __future__ import annotations

import numpy as np
from scipy import stats

from ml_api.stats.inference import msprt_pvalue_array


def run_aa_study(experiments: int = 500, users_per_arm: int = 10_000, look_every: int = 100,
                 rate: float = 0.10, alpha: float = 0.05, tau: float = 0.02,
                 seed: int = 20261122) -> dict:
    """False-positive rates of the naive and the sequential test on simulated A/A
    experiments looked at continuously."""
    rng = np.random.default_rng(seed)
    looks = users_per_arm // look_every
    n = np.arange(1, looks + 1) * look_every
    x_c = rng.binomial(look_every, rate, size=(experiments, looks)).cumsum(axis=1)
    x_t = rng.binomial(look_every, rate, size=(experiments, looks)).cumsum(axis=1)
    p_c, p_t = x_c / n, x_t / n
    diff = p_t - p_c
    variance = (p_c * (1 - p_c) + p_t * (1 - p_t)) / n
    pooled = (x_c + x_t) / (2 * n)
    se_pooled = np.sqrt(pooled * (1 - pooled) * 2 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        naive_p = np.where(se_pooled > 0, 2 * stats.norm.sf(np.abs(diff) / se_pooled), 1.0)
    sequential_p = msprt_pvalue_array(diff, variance, tau)
    naive_any = (naive_p < alpha).any(axis=1)
    sequential_any = (sequential_p < alpha).any(axis=1)
    naive_final = naive_p[:, -1] < alpha
    return {
        "experiments": experiments, "users_per_arm": users_per_arm, "looks": looks,
        "rate": rate, "alpha": alpha, "tau": tau,
        "sequential_false_positive_rate": float(sequential_any.mean()),
        "naive_peeking_false_positive_rate": float(naive_any.mean()),
        "naive_single_look_false_positive_rate": float(naive_final.mean()),
    }
