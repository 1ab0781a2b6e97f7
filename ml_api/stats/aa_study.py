"""A/A study: how often each test declares a difference that does not exist, when results are
looked at continuously. Both arms convert at the same rate; every `look_every` users per arm
the naive fixed-horizon z-test and the mSPRT are checked, and an experiment counts as a false
positive if any look rejects: the running minimum of the mSPRT p-value (always_valid.py)
ends at most alpha.

Each study also counts decisions that flip back: experiments where the rule reached a
decision at one look and not at a later one. Deciding on the current look alone flips back;
deciding on the running minimum never does."""
from __future__ import annotations

import numpy as np
from scipy import stats

from ml_api.stats.cuped import CovariateSums, cuped_effect
from ml_api.stats.inference import msprt, msprt_pvalue_array
from ml_api.stats.model_quality import log_losses

# CovariateSums' fields after n, then its missing count and their y sum
SUMS = ("y", "y2", "x", "x2", "xy", "missing", "y_missing")


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
    running_min = np.minimum.accumulate(sequential_p, axis=1)
    return {
        "experiments": experiments, "users_per_arm": users_per_arm, "looks": looks,
        "rate": rate, "alpha": alpha, "tau": tau,
        "sequential_false_positive_rate": float(sequential_any.mean()),
        "running_min_false_positive_rate": float((running_min[:, -1] < alpha).mean()),
        "current_look_flip_backs": flip_backs(sequential_p < alpha),
        "running_min_flip_backs": flip_backs(running_min < alpha),
        "naive_peeking_false_positive_rate": float(naive_any.mean()),
        "naive_single_look_false_positive_rate": float(naive_final.mean()),
    }


def flip_backs(decided: np.ndarray) -> int:
    """Experiments (rows) decided at some look (column) and undecided at a later one."""
    later_undecided = np.flip(np.logical_or.accumulate(np.flip(~decided, axis=1), axis=1),
                              axis=1)
    return int((decided[:, :-1] & later_undecided[:, 1:]).any(axis=1).sum())


def _cumulative(values: np.ndarray, look_every: int) -> np.ndarray:
    """Running sums at every look: (experiments, users) -> (experiments, looks)."""
    experiments, users = values.shape
    return values.reshape(experiments, users // look_every, look_every).sum(axis=2).cumsum(axis=1)


def run_cuped_study(experiments: int = 300, users_per_arm: int = 4_000, look_every: int = 100,
                    effect: float = 0.0, rho: float = 0.7, alpha: float = 0.05,
                    tau: float = 0.1, missing: float = 0.0, seed: int = 20261202) -> dict:
    """The mSPRT on the plain and on the CUPED-adjusted difference, looked at every
    `look_every` users per arm. Each user's metric is rho * x + noise (unit variance) plus
    `effect` in the treatment arm, x its pre-exposure covariate, which a share `missing` of
    the users do not send (they stay in: cuped.py). With effect 0 the rates are false
    positives of the running minimum p-value; otherwise they are the power, and
    `mean_users_to_detect` the users per arm at the first rejection (experiments that never
    reject count as users_per_arm). `*_flip_backs` count experiments whose decision on the
    current look alone came and went."""
    rng = np.random.default_rng(seed)
    looks = users_per_arm // look_every
    n = np.arange(1, looks + 1) * look_every
    arms = []
    for shift in (0.0, effect):
        x = rng.normal(size=(experiments, users_per_arm))
        y = rho * x + np.sqrt(1 - rho * rho) * rng.normal(size=x.shape) + shift
        gone = rng.random(x.shape) < missing
        sent = np.where(gone, 0.0, x)
        arms.append({name: _cumulative(v, look_every) for name, v in
                     zip(SUMS, (y, y * y, sent, sent * sent, sent * y, gone, gone * y))})
    p_values = {"plain": np.empty((experiments, looks)), "cuped": np.empty((experiments, looks))}
    for e in range(experiments):  # the service's own computation, look by look
        for k in range(looks):
            control, treatment = (CovariateSums(int(n[k]), *(a[s][e, k] for s in SUMS[:5]),
                                                int(a["missing"][e, k]), a["y_missing"][e, k])
                                  for a in arms)
            now = cuped_effect(control, treatment, alpha, tau)
            p_values["plain"][e, k] = msprt(now["unadjusted"]["estimate"],
                                            now["unadjusted"]["variance"], tau, alpha)[0]
            p_values["cuped"][e, k] = now["sequential"]["p_value"]
    result = {"experiments": experiments, "users_per_arm": users_per_arm, "looks": looks,
              "effect": effect, "rho": rho, "alpha": alpha, "tau": tau, "missing": missing}
    for name, p in p_values.items():
        rejected = np.minimum.accumulate(p, axis=1) < alpha  # the running minimum decides
        first = np.where(rejected.any(axis=1), rejected.argmax(axis=1), looks - 1)
        result[f"{name}_rejection_rate"] = float(rejected[:, -1].mean())
        result[f"{name}_mean_users_to_detect"] = float(n[first].mean())
        result[f"{name}_current_look_flip_backs"] = flip_backs(p < alpha)
        result[f"{name}_flip_backs"] = flip_backs(rejected)
    return result


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def run_paired_study(experiments: int = 300, labels: int = 4_000, look_every: int = 100,
                     primary_noise: float = 1.0, shadow_noise: float = 1.0,
                     alpha: float = 0.05, tau: float = 0.05, seed: int = 20261203) -> dict:
    """The shadow strategy's paired mSPRT against the unpaired one on the same labelled
    requests, looked at every `look_every` labels. Each request has a true log-odds z ~ N(0,
    1.5^2) and a label drawn from it; each model scores sigmoid(z + its own N(0, noise^2)
    error), so the model with less noise has the lower expected log-loss. Equal noise is an
    A/A test: the rates are false positives. Otherwise they are the power, and
    `*_mean_labels_to_detect` the labels at the first rejection (experiments that never
    reject count as `labels`); `log_loss_improvement` is the primary's mean log-loss minus the
    shadow's over all simulated requests."""
    rng = np.random.default_rng(seed)
    looks = labels // look_every
    n = np.arange(1, looks + 1) * look_every
    z = rng.normal(0, 1.5, size=(experiments, labels))
    y = (rng.random(z.shape) < _sigmoid(z)).astype(np.int8)
    primary = log_losses(_sigmoid(z + rng.normal(0, primary_noise, z.shape)).ravel(),
                         y.ravel()).reshape(z.shape)
    shadow = log_losses(_sigmoid(z + rng.normal(0, shadow_noise, z.shape)).ravel(),
                        y.ravel()).reshape(z.shape)
    d = shadow - primary
    sum_p, sum_s, sum_d = (_cumulative(v, look_every) for v in (primary, shadow, d))
    sq_p, sq_s, sq_d = (_cumulative(v * v, look_every) for v in (primary, shadow, d))

    def variance_of_mean(total, squares):  # sample variance over n, of the running mean
        return (squares - total * total / n) / (n - 1) / n

    diff = sum_d / n
    rejected = {
        # the shadow strategy's decision, and the same labels taken as unpaired
        "paired": msprt_pvalue_array(diff, variance_of_mean(sum_d, sq_d), tau) < alpha,
        "unpaired": msprt_pvalue_array(
            diff, variance_of_mean(sum_p, sq_p) + variance_of_mean(sum_s, sq_s), tau) < alpha,
    }
    result = {"experiments": experiments, "labels": labels, "looks": looks,
              "primary_noise": primary_noise, "shadow_noise": shadow_noise, "alpha": alpha,
              "tau": tau, "log_loss_improvement": float(-d.mean()),
              "loss_correlation": float(np.corrcoef(primary.ravel(), shadow.ravel())[0, 1])}
    for name, now in rejected.items():
        hits = np.logical_or.accumulate(now, axis=1)  # the running minimum p-value decides
        result[f"{name}_current_look_flip_backs"] = flip_backs(now)
        result[f"{name}_flip_backs"] = flip_backs(hits)
        first = np.where(hits.any(axis=1), hits.argmax(axis=1), looks - 1)
        result[f"{name}_rejection_rate"] = float(hits.any(axis=1).mean())
        result[f"{name}_mean_labels_to_detect"] = float(n[first].mean())
    return result
