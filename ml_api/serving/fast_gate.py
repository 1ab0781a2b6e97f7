"""The load-time check a restated scorer must pass before it serves: rows where a wrong
restatement would show.

- rows around the model's own training data (the manifest's feature means and standard
  deviations; else the scaler's, else N(0, 1)), and the same rounded to integers;
- for tree models, rows on every split threshold and on its float32 and float64 neighbours;
- rows on the decision boundary (found by bisection between rows of opposite classes) and
  their neighbours.

On each row the scorer's class must be predict's, and its probability within the scorer's
tolerance of predict_proba[:, 1], widened to scikit-learn's own single-row/batch disagreement
measured on the same rows.
"""
from __future__ import annotations

import numpy as np

from ml_api.serving.fast_scorer import FastScorer, RefusedRow

MAX_THRESHOLD_NODES = 300
TRAINING_ROWS = 256
BOUNDARY_PAIRS = 24
BISECTIONS = 60  # halvings of a segment: down to the spacing of its doubles
OWN_DISAGREEMENT_ROWS = 16


def training_like(estimator, n_features: int, reference: dict | None, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Rows drawn around the training data's feature means and standard deviations."""
    mean, std = np.zeros(n_features), np.ones(n_features)
    scaler = getattr(estimator, "steps", [[None, None]])[0][1]
    if reference and len(reference.get("mean", ())) == n_features:
        mean, std = np.asarray(reference["mean"], float), np.asarray(reference["std"], float)
    elif getattr(scaler, "mean_", None) is not None and getattr(scaler, "scale_", None) \
            is not None:
        mean, std = np.asarray(scaler.mean_, float), np.asarray(scaler.scale_, float)
    return mean + rng.normal(size=(count, n_features)) * np.where(std > 0, std, 1.0)


def threshold_rows(estimator, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows with one feature on a tree's split threshold, or one float32/float64 step off."""
    trees = [e.tree_ for e in np.ravel(getattr(estimator, "estimators_", []))
             if hasattr(e, "tree_")]
    splits = [(tree.feature[n], tree.threshold[n]) for tree in trees
              for n in np.flatnonzero(tree.children_left != -1)]
    if not splits:
        return np.empty((0, base.shape[1]))
    chosen = rng.choice(len(splits), size=min(len(splits), MAX_THRESHOLD_NODES), replace=False)
    rows = []
    for i, index in enumerate(chosen):
        feature, threshold = splits[index]
        single = np.float32(threshold)
        for value in (threshold, np.nextafter(threshold, np.inf),
                      np.nextafter(threshold, -np.inf), float(single),
                      float(np.nextafter(single, np.float32(np.inf))),
                      float(np.nextafter(single, np.float32(-np.inf)))):
            row = base[i % len(base)].copy()
            row[feature] = value
            rows.append(row)
    return np.array(rows)


def boundary_rows(scorer: FastScorer, base: np.ndarray) -> np.ndarray:
    """Rows within a few ulps of the scorer's decision boundary, found by bisection on
    segments between rows it puts in opposite classes."""
    sides = [scorer.score(row.tolist())[0] for row in base]
    positive = [row for row, side in zip(base, sides) if side is True]
    negative = [row for row, side in zip(base, sides) if side is False]
    rows = []
    for low, high in list(zip(negative, positive))[:BOUNDARY_PAIRS]:
        for _ in range(BISECTIONS):
            middle = (low + high) / 2
            side = scorer.score(middle.tolist())[0]
            if side is None:
                break
            low, high = (middle, high) if side is False else (low, middle)
        rows.extend([low, high, (low + high) / 2])
    return np.array(rows) if rows else np.empty((0, base.shape[1]))


def gate_rows(estimator, scorer: FastScorer, n_features: int, reference: dict | None,
              seed: int = 0) -> np.ndarray:
    """Every row the gate checks."""
    rng = np.random.default_rng(seed)
    base = training_like(estimator, n_features, reference, TRAINING_ROWS, rng)
    parts = [base, np.round(base), threshold_rows(estimator, base, rng),
             boundary_rows(scorer, base)]
    return np.vstack([p for p in parts if len(p)])


def disagreements(estimator, scorer: FastScorer, rows: np.ndarray) -> list[str]:
    """The rows where the scorer departs from the estimator (empty: it may serve)."""
    expected = estimator.predict_proba(rows)[:, 1]
    labels = estimator.predict(rows)
    own = 0.0
    for row, batch in zip(rows[:OWN_DISAGREEMENT_ROWS], expected):
        own = max(own, abs(float(estimator.predict_proba(row.reshape(1, -1))[0, 1]) - batch))
    problems = []
    for row, want, label in zip(rows, expected, labels):
        values = row.tolist()
        try:
            positive, probability = scorer.score(values)
        except RefusedRow:
            problems.append(f"refused a row predict_proba answers: {values}")
            continue
        if positive is None:
            continue  # the estimator decides these rows itself
        if label != estimator.classes_[int(positive)]:
            problems.append(f"class {positive} where predict gives {label!r}: {values}")
        elif not abs(probability - want) <= max(scorer.tolerance(values), 2 * own):
            problems.append(f"score {probability!r} where predict_proba gives {want!r}: "
                            f"{values}")
    return problems
