"""The fast single-row path gives exactly the estimator's own predict_proba."""
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ml_api.serving.fast_proba import fast_proba
from ml_api.serving.registry import ModelRegistry
from ml_api.serving.training import demo_dataset

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


def test_gradient_boosting_with_uneven_trees_and_rows_on_the_thresholds():
    """Leaves at several depths (a leaf is its own next node) and feature values sitting on
    split thresholds (compared as float32, as scikit-learn does) give predict_proba's answer."""
    model = GradientBoostingClassifier(n_estimators=40, max_depth=5, min_samples_leaf=30,
                                       random_state=0).fit(X, Y)
    trees = [estimator.tree_ for estimator in model.estimators_[:, 0]]
    leaf_depths = set()
    for tree in trees:
        depth = {0: 0}
        for node in range(tree.node_count):
            if tree.children_left[node] == -1:
                leaf_depths.add(depth[node])
            else:
                depth[tree.children_left[node]] = depth[tree.children_right[node]] = depth[node] + 1
    assert len(leaf_depths) > 1
    fast = fast_proba(model, X.shape[1])
    assert fast is not None
    rows = []
    for i, tree in enumerate(trees):
        for node in np.flatnonzero(tree.children_left != -1)[:3]:
            row = X[i % len(X)].copy()
            row[tree.feature[node]] = tree.threshold[node]
            rows.append(row)
            nudged = row.copy()
            nudged[tree.feature[node]] = np.nextafter(np.float32(tree.threshold[node]),
                                                      np.float32(np.inf))
            rows.append(nudged)
    rows = np.array(rows)
    expected = model.predict_proba(rows)[:, 1]
    assert np.allclose([fast(row) for row in rows], expected, rtol=0, atol=1e-12)


def test_logistic_fast_path_saturates_like_predict_proba_at_extreme_logits():
    """Rows far outside the data push the logit past what exp() can take either way: the
    fast path neither overflows nor departs from predict_proba's 0 and 1."""
    model = LogisticRegression(max_iter=5000).fit(X, Y)
    fast = fast_proba(model, X.shape[1])
    rows = np.vstack([X[:20] * 1e6, X[:20] * -1e6, X[:20] * 1e-9])
    expected = model.predict_proba(rows)[:, 1]
    assert {0.0, 1.0} <= set(expected.round(12))
    assert np.allclose([fast(row.tolist()) for row in rows], expected, rtol=0, atol=1e-12)


def test_gradient_boosting_past_the_size_limit_keeps_its_own_method(monkeypatch):
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, Y)
    assert fast_proba(model, X.shape[1]) is not None
    nodes = sum(estimator.tree_.node_count for estimator in model.estimators_[:, 0])
    monkeypatch.setattr("ml_api.serving.fast_proba.MAX_TREE_NODES", nodes - 1)
    assert fast_proba(model, X.shape[1]) is None
