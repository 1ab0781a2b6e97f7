"""A binary GradientBoostingClassifier restated for one row, as nested comparisons compiled
once.

On one row, every numpy call costs more than the comparisons it makes, and a busy worker finds
numpy's code and the trees' arrays out of its caches; a walk down each tree in plain
comparisons makes no call and touches little memory. The arithmetic is scikit-learn's: the
row rounded to float32 (array 'f', the same C conversion) and refused when a value becomes
infinite, float32 values compared against float64 thresholds, learning_rate * leaf value added
tree after tree to the initial raw score. The raw score is therefore bit-identical; the class
is its sign as GradientBoostingClassifier.predict decides it (raw >= 0), and the probability
is the loss's own inverse link (expit(raw) for log_loss, expit(2 raw) for exponential).

The loss and link classes that say which inverse link a fitted model uses come from
scikit-learn's private sklearn._loss, which may change in any release: scikit-learn is pinned
in pyproject.toml for this reason too, and a bump must pass tests/test_exact_scores.py.
"""
from __future__ import annotations

import math
from array import array

import numpy as np
from sklearn._loss.link import HalfLogitLink, LogitLink
from sklearn._loss.loss import ExponentialLoss, HalfBinomialLoss
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.tree import DecisionTreeRegressor

from ml_api.serving.fast_scorer import EPS, FastScorer, RefusedRow, sigmoid

# Trees bigger than this keep scikit-learn's own method: their generated code would be slow
# to compile and too deep for the parser.
MAX_TREE_DEPTH = 16
MAX_TREE_NODES = 100_000
FLOAT32_MAX = float(np.finfo(np.float32).max)
# loss parameter -> (loss class, link class, factor of the raw score inside expit)
LOSSES = {"log_loss": (HalfBinomialLoss, LogitLink, 1.0),
          "exponential": (ExponentialLoss, HalfLogitLink, 2.0)}


def _factor(model: GradientBoostingClassifier) -> float | None:
    """The raw-score factor of the model's loss, or None for a loss not restated here."""
    loss = getattr(model, "_loss", None)
    expected = LOSSES.get(model.loss)
    if expected is None or type(loss) is not expected[0] \
            or type(loss.link) is not expected[1]:
        return None
    return expected[2]


def _constant_init(model: GradientBoostingClassifier) -> bool:
    """True when the initial raw score is one number for every row: no init estimator, or
    the default prior (a DummyClassifier of strategy "prior")."""
    init = model.init_
    if isinstance(init, str):
        return init == "zero"
    return type(init) is DummyClassifier and init.strategy == "prior"


def _trees(model: GradientBoostingClassifier, n_features: int):
    if type(model) is not GradientBoostingClassifier or len(model.classes_) != 2 \
            or model.n_trees_per_iteration_ != 1 or model.n_features_in_ != n_features \
            or model.estimators_.shape[1] != 1:
        return None
    estimators = list(model.estimators_[:, 0])
    if not all(type(e) is DecisionTreeRegressor and e.tree_.n_outputs == 1
               for e in estimators):
        return None
    trees = [e.tree_ for e in estimators]
    if max(tree.max_depth for tree in trees) > MAX_TREE_DEPTH \
            or sum(tree.node_count for tree in trees) > MAX_TREE_NODES:
        return None
    return trees


def tree_scorer(model, n_features: int) -> FastScorer | None:
    """The restated scorer of a binary GradientBoostingClassifier, or None when the model is
    anything else (another loss, an init estimator, multiclass, trees too big)."""
    if type(model) is not GradientBoostingClassifier:
        return None
    factor = _factor(model)
    trees = _trees(model, n_features)
    if factor is None or trees is None or not _constant_init(model):
        return None
    start = float(model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))[0, 0])
    if not math.isfinite(start):
        return None
    names = "".join(f"x{i}, " for i in range(n_features))
    lines = ["def raw_score(row):", "    xs = array('f', row)",
             "    if not isfinite(sum(xs)):",
             "        raise RefusedRow('a feature is beyond float32, which the trees compare')",
             f"    {names}= xs", f"    score = {start!r}"]

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
    # The source holds only numbers read from the verified artifact.
    namespace = {"array": array, "isfinite": math.isfinite, "RefusedRow": RefusedRow}
    exec(compile("\n".join(lines), "<gradient boosting trees>", "exec"), namespace)
    raw_score = namespace["raw_score"]

    def score(row, magnitude: float | None = None) -> tuple[bool | None, float]:
        raw = raw_score(row)
        return raw >= 0, sigmoid(factor * raw)

    return FastScorer(score, lambda row: 4 * EPS, FLOAT32_MAX, "gradient boosting")
