"""Single-row predict_proba without scikit-learn's per-call input validation, for estimator
types whose arithmetic is simple to restate. On one row, validation (dtype and dataframe
checks, parameter checks) costs several times the arithmetic.

A fast path is used only after it reproduces the estimator's own predict_proba on sample rows
(to 1e-9); any other estimator, or any mismatch, keeps the estimator's own method.
"""
from __future__ import annotations

import logging
import math
import operator
from typing import Callable, Sequence

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

log = logging.getLogger(__name__)
# One row (a sequence of floats) -> probability of the second (positive) class of a binary
# model.
Proba = Callable[[Sequence[float]], float]


def _sigmoid(z: float) -> float:
    """scipy's expit for one float, without a ufunc call; never overflows."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _logistic(model: LogisticRegression, scaler: StandardScaler | None) -> Proba | None:
    if model.coef_.shape[0] != 1 or len(model.classes_) != 2:
        return None
    coef, intercept = model.coef_[0].copy(), float(model.intercept_[0])
    if scaler is not None:  # fold the scaling into the weights: ((x-m)/s).w = x.(w/s) - m.(w/s)
        mean = scaler.mean_ if scaler.with_mean else np.zeros_like(coef)
        scale = scaler.scale_ if scaler.with_std else np.ones_like(coef)
        coef = coef / scale
        intercept -= float(mean @ coef)
    # A dot product of a few features costs less in Python than converting the row to an
    # array: the weights as floats, summed after the intercept.
    weights, multiply = coef.tolist(), operator.mul
    return lambda x: _sigmoid(sum(map(multiply, x, weights), intercept))


def _gradient_boosting(model: GradientBoostingClassifier, n_features: int) -> Proba | None:
    """All the trees in five flat arrays, walked one level at a time for every tree at once.

    scikit-learn's predict_stages visits each tree object in turn (the estimator, its tree,
    its node and value arrays: separate allocations, mostly cache misses once a busy worker
    has run other code in between); here one comparison over every node gives each node's
    next node, and `depth` lookups take every tree from its root to its leaf. A leaf is its
    own next node. As in scikit-learn, the row is compared as float32 against float64
    thresholds.
    """
    if model.n_trees_per_iteration_ != 1 or not (
            model.init_ == "zero" or isinstance(model.init_, DummyClassifier)):
        return None
    # With a "zero" or prior init, the starting raw score is the same for every row.
    start = float(model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))[0, 0])
    trees = [estimator.tree_ for estimator in model.estimators_[:, 0]]
    roots = np.cumsum([0] + [tree.node_count for tree in trees[:-1]]).astype(np.intp)
    parts: dict[str, list[np.ndarray]] = {"feature": [], "threshold": [], "left": [],
                                          "right": [], "value": []}
    for tree, root in zip(trees, roots):
        leaf = tree.children_left == -1
        here = np.arange(tree.node_count) + root
        parts["feature"].append(np.where(leaf, 0, tree.feature))
        parts["threshold"].append(np.where(leaf, np.inf, tree.threshold))
        parts["left"].append(np.where(leaf, here, tree.children_left + root))
        parts["right"].append(np.where(leaf, here, tree.children_right + root))
        parts["value"].append(tree.value[:, 0, 0] * model.learning_rate)
    feature, left, right = (np.concatenate(parts[name]).astype(np.intp)
                            for name in ("feature", "left", "right"))
    threshold, value = np.concatenate(parts["threshold"]), np.concatenate(parts["value"])
    depth = max(tree.max_depth for tree in trees)

    def proba(x: Sequence[float]) -> float:
        following = np.where(np.array(x, dtype=np.float32)[feature] <= threshold, left, right)
        node = roots
        for _ in range(depth):
            node = following[node]
        return _sigmoid(start + float(value[node].sum()))

    return proba


def fast_proba(estimator, n_features: int, seed: int = 0) -> Proba | None:
    """A checked fast single-row positive-class probability for this binary estimator, or
    None."""
    if isinstance(estimator, Pipeline) and len(estimator.steps) == 2 \
            and isinstance(estimator.steps[0][1], StandardScaler) \
            and isinstance(estimator.steps[1][1], LogisticRegression):
        candidate = _logistic(estimator.steps[1][1], estimator.steps[0][1])
    elif isinstance(estimator, LogisticRegression):
        candidate = _logistic(estimator, None)
    elif isinstance(estimator, GradientBoostingClassifier):
        candidate = _gradient_boosting(estimator, n_features)
    else:
        return None
    if candidate is None:
        return None
    rows = np.random.default_rng(seed).normal(size=(64, n_features))
    scale = getattr(estimator, "steps", [[None, None]])[0][1]
    if isinstance(scale, StandardScaler):  # probe around the data the model was fitted on
        rows = rows * scale.scale_ + scale.mean_
    expected = estimator.predict_proba(rows)[:, 1]
    actual = np.array([candidate(row) for row in rows])
    if not np.allclose(actual, expected, rtol=0, atol=1e-9):
        log.warning("fast path for %s disagrees with predict_proba; not used",
                    type(estimator).__name__)
        return None
    return candidate
