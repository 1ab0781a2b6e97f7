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
from array import array
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


# Trees bigger than this keep scikit-learn's own method: their generated code would be slow
# to compile and too deep for the parser.
MAX_TREE_DEPTH = 16
MAX_TREE_NODES = 100_000


def _gradient_boosting(model: GradientBoostingClassifier, n_features: int) -> Proba | None:
    """The trees written out as one Python function of nested comparisons, compiled once.

    On one row, every numpy call costs more than the comparisons it makes, and a busy worker
    finds numpy's code and the trees' arrays out of its caches; a walk down each tree in
    plain comparisons makes no call and touches little memory. As in scikit-learn, the row is
    rounded to float32 (array 'f') and compared against float64 thresholds, and the trees'
    values are added one tree after another to the initial raw score. The source holds only
    numbers read from the verified artifact.
    """
    if model.n_trees_per_iteration_ != 1 or not (
            model.init_ == "zero" or isinstance(model.init_, DummyClassifier)):
        return None
    trees = [estimator.tree_ for estimator in model.estimators_[:, 0]]
    if max(tree.max_depth for tree in trees) > MAX_TREE_DEPTH \
            or sum(tree.node_count for tree in trees) > MAX_TREE_NODES:
        return None
    # With a "zero" or prior init, the starting raw score is the same for every row.
    start = float(model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))[0, 0])
    names = "".join(f"x{i}, " for i in range(n_features))
    lines = ["def raw_score(row):", f"    {names}= array('f', row)", f"    score = {start!r}"]

    def write(tree, node: int, indent: str) -> None:
        if tree.children_left[node] == -1:
            leaf = float(tree.value[node, 0, 0] * model.learning_rate)
            lines.append(f"{indent}score += {leaf!r}")
            return
        lines.append(f"{indent}if x{int(tree.feature[node])} <= {float(tree.threshold[node])!r}:")
        write(tree, int(tree.children_left[node]), indent + "    ")
        lines.append(f"{indent}else:")
        write(tree, int(tree.children_right[node]), indent + "    ")

    for tree in trees:
        write(tree, 0, "    ")
    lines.append("    return score")
    namespace = {"array": array}
    exec(compile("\n".join(lines), "<gradient boosting trees>", "exec"), namespace)
    raw_score = namespace["raw_score"]
    return lambda x: _sigmoid(raw_score(x))


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
