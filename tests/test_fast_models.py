"""The fast single-row path gives exactly the estimator's own predict_proba."""
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ml_api.fast_models import fast_proba
from ml_api.model_registry import ModelRegistry
from ml_api.training import demo_dataset

X, Y, _ = demo_dataset()


@pytest.mark.parametrize("key", ["logreg@1", "gboost@1"])
def test_demo_models_fast_path_matches_predict_proba_on_every_row(models_dir, key):
    model = ModelRegistry.load(models_dir).get(key)
    assert model._fast_proba is not None
    expected = model.estimator.predict_proba(X)
    for row, want in zip(X, expected):
        prediction, score = model.predict(row.tolist())
        assert score == pytest.approx(want[1], abs=1e-12)
        assert prediction == model.estimator.classes_[want.argmax()]


def test_other_estimators_keep_their_own_method():
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    assert fast_proba(forest, X.shape[1]) is None
    plain = LogisticRegression(max_iter=5000).fit(X, Y)
    fast = fast_proba(plain, X.shape[1])
    assert np.allclose([fast(r) for r in X[:50]], plain.predict_proba(X[:50])[:, 1], atol=1e-12)
    multi = GradientBoostingClassifier(n_estimators=5).fit(X, np.arange(len(Y)) % 3)
    assert fast_proba(multi, X.shape[1]) is None
