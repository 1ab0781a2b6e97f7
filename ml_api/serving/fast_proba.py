"""Single-row scoring without scikit-learn's per-call input validation, for the estimator
configurations whose arithmetic is restated here exactly (fast_linear.py, fast_trees.py). On
one row, validation (dtype and dataframe checks, parameter checks) costs several times the
arithmetic.

A restated scorer serves only after it agrees with the estimator's own predict and
predict_proba on the gate's rows (fast_gate.py). Any other estimator, a mismatch, or a scorer
that fails to build keeps the estimator's own methods; nothing here stops a model loading.
"""
from __future__ import annotations

import logging

from ml_api.serving.fast_gate import disagreements, gate_rows
from ml_api.serving.fast_linear import linear_scorer
from ml_api.serving.fast_scorer import FastScorer
from ml_api.serving.fast_trees import tree_scorer

log = logging.getLogger(__name__)


def restated(estimator, n_features: int) -> FastScorer | None:
    """The restated scorer for this estimator's configuration, unchecked; None when its
    configuration is not one restated exactly."""
    return linear_scorer(estimator, n_features) or tree_scorer(estimator, n_features)


def fast_scorer(estimator, n_features: int, reference: dict | None = None,
                name: str = "model") -> FastScorer | None:
    """A checked fast single-row scorer for this binary estimator, or None (the estimator's
    own methods serve). `reference` holds the training data's feature means and standard
    deviations, from the manifest."""
    try:
        candidate = restated(estimator, n_features)
        if candidate is None:
            return None
        problems = disagreements(estimator, candidate,
                                 gate_rows(estimator, candidate, n_features, reference))
    except Exception:  # noqa: BLE001 - a scorer that cannot be built is simply not used
        log.exception("fast path for %s could not be built; its own methods serve", name)
        return None
    if problems:
        log.warning("fast path for %s disagrees with the estimator on %d rows (first: %s); "
                    "its own methods serve", name, len(problems), problems[0])
        return None
    return candidate
