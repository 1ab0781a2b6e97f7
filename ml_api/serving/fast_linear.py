"""A binary LogisticRegression, alone or after a StandardScaler, restated for one row.

The arithmetic is scikit-learn's, step for step: (x - mean_) / scale_ element by element
(bit-identical, both are IEEE operations on doubles), the dot product with coef_, then
intercept_ added, and expit. Only the dot product's summation order may differ from the BLAS
kernel numpy picks, so the logit can differ in its last bits: within
DOT_ERROR * (|intercept| + sum |terms|). The class is the sign of the logit, as
LogisticRegression.predict decides it; a logit within that error of 0 is left to the
estimator (None). sum |terms| costs a second pass over the row, so it is taken only when the
logit is within an a-priori bound of that error, from the row's largest |value| and the
weights' sums fixed at load.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from operator import mul, sub, truediv

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ml_api.serving.fast_scorer import EPS, FastScorer, sigmoid

# |computed - exact| of a sum of n products is at most about n * 2^-53 * sum |terms|; two
# such sums (ours and numpy's) differ by twice that. A factor 2 more as margin.
DOT_ERROR = 4 * 2.0 ** -53
# Logits are kept far from overflow: any term or partial sum below this is finite.
FINITE_LIMIT = 1e300
TINY = 2.0 ** -1000  # far above what rounding subnormal numbers can lose, far below any logit


def _parts(estimator) -> tuple[StandardScaler | None, LogisticRegression] | None:
    if type(estimator) is LogisticRegression:
        return None, estimator
    if type(estimator) is Pipeline and len(estimator.steps) == 2 \
            and type(estimator.steps[0][1]) is StandardScaler \
            and type(estimator.steps[1][1]) is LogisticRegression:
        return estimator.steps[0][1], estimator.steps[1][1]
    return None


def _vector(values, n_features: int) -> list[float] | None:
    """The values as floats when they are n_features finite doubles, else None."""
    array = np.asarray(values)
    if array.dtype != np.float64 or array.shape != (n_features,) \
            or not np.isfinite(array).all():
        return None
    return array.tolist()


def linear_scorer(estimator, n_features: int) -> FastScorer | None:
    """The restated scorer of a binary (StandardScaler +) LogisticRegression, or None when
    the estimator is anything else."""
    parts = _parts(estimator)
    if parts is None:
        return None
    scaler, model = parts
    # intercept_ is an array of one, or the scalar 0.0 liblinear sets without an intercept.
    if len(model.classes_) != 2 or np.shape(model.coef_) != (1, n_features) \
            or np.shape(model.intercept_) not in ((1,), ()):
        return None
    weights = _vector(model.coef_[0], n_features)
    intercept = float(np.ravel(model.intercept_)[0])
    intercept = intercept if math.isfinite(intercept) else None
    mean = scale = None
    if scaler is not None:
        if scaler.with_mean and (mean := _vector(scaler.mean_, n_features)) is None:
            return None
        if scaler.with_std and ((scale := _vector(scaler.scale_, n_features)) is None
                                or min(scale) <= 0):
            return None
    if weights is None or intercept is None:
        return None
    n = n_features + 1
    error = DOT_ERROR * n
    # sum |w_i / s_i|: each |term| is at most (max |x| + max |mean|) times its share of it.
    weight_sum = sum(abs(w) / (1.0 if scale is None else s)
                     for w, s in zip(weights, scale or [1.0] * n_features))
    largest_mean = max(map(abs, mean)) if mean is not None else 0.0
    # An a-priori bound on error * (sum |terms| + |intercept|) given max |x|: terms and sums
    # round by a relative n * 2^-53 at most, which the factor 2 covers; TINY covers what
    # subnormal terms may lose in absolute terms.
    bound_slope = 2.0 * weight_sum
    bound_offset = 2.0 * largest_mean * weight_sum + abs(intercept) + TINY

    def terms(row) -> Iterator[float]:
        values = row if mean is None else map(sub, row, mean)
        values = values if scale is None else map(truediv, values, scale)
        return map(mul, values, weights)

    def score(row, magnitude: float | None = None) -> tuple[bool | None, float]:
        logit = sum(terms(row)) + intercept  # X @ coef_.T, then + intercept_
        if magnitude is None:
            magnitude = max(map(abs, row))
        size = abs(logit)
        # A finite logit had no term overflow, so the a-priori bound holds for it.
        if error * (magnitude * bound_slope + bound_offset) < size < math.inf \
                or size > error * (sum(map(abs, terms(row))) + abs(intercept)):
            return logit > 0, sigmoid(logit)
        return None, math.nan  # on the boundary, or not finite: the estimator decides

    def tolerance(row) -> float:
        return 4 * EPS + 0.25 * error * (sum(map(abs, terms(row))) + abs(intercept))

    # Below this magnitude, every scaled value and every partial sum stays finite, so the
    # estimator answers (and with a finite score).
    slope = weight_sum + 1.0
    smallest_scale = min(scale) if scale is not None else 1.0
    safe = max(0.0, min((FINITE_LIMIT - abs(intercept)) / slope,
                        FINITE_LIMIT * min(1.0, smallest_scale)) - largest_mean)
    return FastScorer(score, tolerance, safe, "logistic regression")
