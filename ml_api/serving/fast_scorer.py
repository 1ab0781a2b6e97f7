"""What a restated single-row scorer is (fast_linear.py, fast_trees.py), and the pieces they
share."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

EPS = 2.0 ** -52  # the spacing of doubles just above 1


class RefusedRow(ValueError):
    """The estimator's own validation would refuse this row (e.g. a value beyond float32 for
    a tree model)."""


class FastScorer(NamedTuple):
    """A restated single-row scorer of a binary estimator.

    score(row, magnitude=None) -> (positive, probability): positive is True when the
    estimator's predict gives its second class, None when the scorer cannot tell (a decision
    within its rounding error of the boundary), and then the estimator decides. Raises
    RefusedRow for a row the estimator refuses. `magnitude`, the row's largest |value| when
    the caller has it, spares the scorer working it out.
    tolerance(row): the largest difference from predict_proba[:, 1] the scorer allows itself
    on that row.
    safe_magnitude: rows whose every |value| is at most this are never refused.
    """

    score: Callable[[Sequence[float]], tuple[bool | None, float]]
    tolerance: Callable[[Sequence[float]], float]
    safe_magnitude: float
    kind: str


def sigmoid(z: float) -> float:
    """scipy's expit for one float, computed as scipy computes it: 1 / (1 + exp(-z))."""
    try:
        return 1.0 / (1.0 + math.exp(-z))
    except OverflowError:  # exp(-z) beyond the doubles: scipy's 1 / inf
        return 0.0
