"""One verified estimator answering single rows: its checked fast path when it has one, else
its own predict and predict_proba. Either way the answer is the estimator's own: the class is
always model.predict(row), and a row the estimator refuses is InvalidFeatures."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import sklearn
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from ml_api.errors import InvalidFeatures
from ml_api.serving.fast_proba import fast_scorer
from ml_api.serving.fast_scorer import RefusedRow

# Rows within this magnitude go to the estimator with scikit-learn's finiteness checks off
# (the service has checked finiteness); larger ones get every check.
UNCHECKED_MAGNITUDE = 2.0 ** 53
# Estimators whose predict is by definition the argmax of their predict_proba.
ARGMAX_PREDICT = (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


class LoadedModel:
    """A verified estimator with a single-row predict that returns plain Python values."""

    def __init__(self, spec, estimator):
        self.spec = spec
        self.estimator = estimator
        self.n_features = len(spec.feature_names)
        self._has_proba = hasattr(estimator, "predict_proba")
        classes = getattr(estimator, "classes_", None)
        self._classes = [_plain(c) for c in classes] if classes is not None else None
        # A score that a 0/1 label can be judged against (log-loss, Brier, AUC).
        self.binary = self._has_proba and self._classes is not None and len(self._classes) == 2
        self._fast = fast_scorer(estimator, self.n_features, spec.reference, spec.key) \
            if self.binary else None
        self._score = self._fast.score if self._fast is not None else None
        # Rows with every |value| up to this are never refused by this model. Only a restated
        # scorer knows such a bound; an estimator of any other kind may refuse any row (a
        # log transform refuses negative values), so each row is put to it before anything
        # is stored (check).
        self.safe_magnitude = (self._fast.safe_magnitude if self._fast is not None
                               else -math.inf)
        final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        self._argmax_predict = isinstance(final, ARGMAX_PREDICT)

    @property
    def fast_path(self) -> str | None:
        """The kind of restated scorer serving this model, or None."""
        return self._fast.kind if self._fast is not None else None

    def tolerance(self, row: Sequence[float]) -> float:
        """The largest difference from predict_proba's score this model's answer may have on
        this row: the fast path's (docs/api.md), 0 for the estimator's own methods."""
        return self._fast.tolerance(row) if self._fast is not None else 0.0

    def predict(self, row: Sequence[float],
                magnitude: float | None = None) -> tuple[object, float | None]:
        """(prediction, score): score is the positive-class probability for a binary classifier,
        the predicted class's probability for a multi-class one, None without predict_proba.
        InvalidFeatures when the estimator refuses the row or gives it no finite score.
        `magnitude`: the row's largest |value|, when the caller has it."""
        if self._score is not None:
            try:
                positive, score = self._score(row, magnitude)
            except RefusedRow as exc:
                raise InvalidFeatures(f"model {self.spec.key} refuses these features: {exc}")
            if positive is not None:
                return self._classes[positive], score
        return self._own(row, magnitude)

    def check(self, row: Sequence[float], magnitude: float) -> tuple[object, float | None] | None:
        """Before anything is stored: InvalidFeatures if this model would refuse the row
        (`magnitude`: its largest |value|), else its answer, or None when it refuses no row
        of that magnitude and was not asked."""
        if magnitude > self.safe_magnitude:
            return self.predict(row, magnitude)
        return None

    def _own(self, row: Sequence[float], magnitude: float | None) -> tuple[object, float | None]:
        x = np.asarray(row, dtype=np.float64).reshape(1, -1)
        if magnitude is None:
            magnitude = max(map(abs, row))
        checked = magnitude > UNCHECKED_MAGNITUDE
        try:
            # Finiteness is checked before rows get here; skipping sklearn's own check saves a
            # share of a single-row call, but not where a float32 cast may overflow.
            with sklearn.config_context(assume_finite=not checked,
                                        skip_parameter_validation=True):
                if not self._has_proba or self._classes is None:
                    return _plain(self.estimator.predict(x)[0]), None
                proba = self.estimator.predict_proba(x)[0]
                best = int(proba.argmax())
                label = self._classes[best] if self._argmax_predict \
                    else _plain(self.estimator.predict(x)[0])
        except ValueError as exc:
            if not checked:
                raise
            raise InvalidFeatures(f"model {self.spec.key} refuses these features: {exc}")
        score = float(proba[1] if len(proba) == 2 else proba[self._classes.index(label)])
        if not math.isfinite(score):
            raise InvalidFeatures(f"model {self.spec.key} gives no finite score for these "
                                  "features")
        return label, score
