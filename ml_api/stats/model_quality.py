"""Model quality from true labels: per variant log-loss, Brier score, accuracy, ROC AUC and a
calibration table, an always-valid comparison of mean log-loss against the control, and for
shadow experiments a paired always-valid test on per-request loss differences. Pure: no I/O.

A score is the model's probability of the positive class; a label is 1 when that class was
the truth. Per-request log-loss clips the score to [eps, 1 - eps] with eps the double's machine
epsilon, as scikit-learn's log_loss does.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

from ml_api.stats.inference import msprt

CALIBRATION_BINS = 10
EPS = np.finfo(np.float64).eps


def log_losses(scores: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    """Each prediction's log-loss: -log of the probability it gave the true class."""
    p = np.clip(np.asarray(scores, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, dtype=np.float64)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count one half); None
    unless both classes are present."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = stats.rankdata(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def calibration_table(scores: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Ten equal-width bins of the score, (low, high], the first [0, 0.1]: in each, how many
    predictions, their mean score and the share that were positive."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    bins = np.searchsorted(edges[1:-1], scores)
    counts = np.bincount(bins, minlength=CALIBRATION_BINS)
    score_sums = np.bincount(bins, weights=scores, minlength=CALIBRATION_BINS)
    positive_sums = np.bincount(bins, weights=labels, minlength=CALIBRATION_BINS)
    return [{"low": float(edges[i]), "high": float(edges[i + 1]), "n": int(counts[i]),
             "mean_score": float(score_sums[i] / counts[i]) if counts[i] else None,
             "positive_rate": float(positive_sums[i] / counts[i]) if counts[i] else None}
            for i in range(CALIBRATION_BINS)]


def quality_metrics(scores: Sequence[float], labels: Sequence[int]) -> dict:
    """One variant's metrics over its labelled predictions."""
    p = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    losses = log_losses(p, y)
    return {"n": len(y), "positives": int(y.sum()),
            "log_loss": float(losses.mean()),
            "brier_score": float(np.mean((p - y) ** 2)),
            "accuracy": float(np.mean((p > 0.5) == (y == 1))),  # a tie predicts class 0
            "roc_auc": roc_auc(p, y),
            "calibration": calibration_table(p, y)}


def _sequential(diff: float, variance: float, tau: float, alpha: float) -> dict:
    p_value, low, high = msprt(diff, variance, tau, alpha)
    return {"method": "mSPRT", "tau": tau, "p_value": p_value, "ci": [low, high]}


def compare_log_loss(control: np.ndarray, treatment: np.ndarray, tau: float,
                     alpha: float = 0.05) -> dict | None:
    """Treatment's mean log-loss minus the control's (negative: the treatment is better),
    with an always-valid p-value and interval; the two groups' predictions are independent
    samples. None with fewer than two labels in either group."""
    if min(len(control), len(treatment)) < 2:
        return None
    diff = float(treatment.mean() - control.mean())
    variance = control.var(ddof=1) / len(control) + treatment.var(ddof=1) / len(treatment)
    return {"difference": diff, "standard_error": math.sqrt(variance),
            "sequential": _sequential(diff, float(variance), tau, alpha)}


def paired_log_loss(primary: np.ndarray, shadow: np.ndarray, tau: float,
                    alpha: float = 0.05) -> dict | None:
    """The shadow's log-loss minus the primary's on the same labelled requests: the mean of
    the per-request differences, its standard error, and the always-valid test on it."""
    n = len(primary)
    if n < 2:
        return None
    differences = shadow - primary
    diff = float(differences.mean())
    variance = float(differences.var(ddof=1)) / n
    return {"n": n, "primary_log_loss": float(primary.mean()),
            "shadow_log_loss": float(shadow.mean()), "difference": diff,
            "standard_error": math.sqrt(variance),
            "sequential": _sequential(diff, variance, tau, alpha)}


def model_quality(control: str, scored: dict[str, tuple[list[float], list[int]]],
                  paired: dict[str, tuple[list[float], list[float], list[int]]] | None,
                  tau: float, alpha: float = 0.05) -> dict:
    """The results page's model-quality block: metrics per variant with labels (a shadow
    model's on the labelled requests it scored too), each challenger's log-loss against the
    control's, and for shadow experiments the paired comparison of each shadow variant with
    the primary model."""
    variants = {name: quality_metrics(*scored[name]) for name in scored}
    comparisons = {}
    if control in scored:
        control_losses = log_losses(*scored[control])
        for name, (scores, labels) in scored.items():
            if name != control:
                comparisons[name] = compare_log_loss(control_losses, log_losses(scores, labels),
                                                     tau, alpha)
    for name, (_, shadow, labels) in (paired or {}).items():
        if name not in variants and labels:  # a shadow model, scored on the same requests
            variants[name] = quality_metrics(shadow, labels)
            if control in scored:
                comparisons[name] = compare_log_loss(log_losses(*scored[control]),
                                                     log_losses(shadow, labels), tau, alpha)
    block = {"variants": variants, "log_loss_vs_control": comparisons}
    if paired is not None:
        block["paired"] = {name: paired_log_loss(log_losses(primary, labels),
                                                 log_losses(shadow, labels), tau, alpha)
                           for name, (primary, shadow, labels) in paired.items()}
    return block
