"""The fast single-row path gives the estimator's own predict and predict_proba, and serves
only after the load-time gate finds it does."""
import functools
import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ml_api.serving import fast_proba as fast_proba_module
from ml_api.serving.fast_gate import boundary_rows
from ml_api.serving.fast_proba import fast_scorer
from ml_api.serving.loaded_model import LoadedModel
from ml_api.serving.registry import ModelRegistry
from ml_api.serving.training import demo_dataset
from tests.model_zoo import fitted, loaded, spec

X, Y, _ = demo_dataset()
N = X.shape[1]


@pytest.mark.parametrize("key", ["logreg@1", "gboost@1"])
def test_demo_models_fast_path_matches_predict_proba_on_every_row(models_dir, key):
    model = ModelRegistry.load(models_dir).get(key)
    assert model.fast_path is not None
    expected = model.estimator.predict_proba(X)[:, 1]
    labels = model.estimator.predict(X)
    for row, want, label in zip(X, expected, labels):
        prediction, score = model.predict(row.tolist())
        assert abs(score - want) <= model.tolerance(row.tolist())
        assert prediction == label


def test_demo_manifest_keeps_the_training_means_and_deviations(models_dir):
    reference = ModelRegistry.load(models_dir).get("logreg@1").spec.reference
    assert len(reference["mean"]) == len(reference["std"]) == N
    assert reference["mean"][3] == pytest.approx(X[:, 3].mean(), rel=0.1)


def test_other_estimators_keep_their_own_method():
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    assert fast_scorer(forest, N) is None
    multi = GradientBoostingClassifier(n_estimators=5).fit(X, np.arange(len(Y)) % 3)
    assert fast_scorer(multi, N) is None


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
    fast = fast_scorer(model, N)
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
    assert [fast.score(row.tolist())[1] for row in rows] == expected.tolist()
    assert [model.classes_[int(fast.score(row.tolist())[0])] for row in rows] == \
        model.predict(rows).tolist()


def test_logistic_fast_path_saturates_like_predict_proba_at_extreme_logits():
    """Rows far outside the data push the logit past what exp() can take either way: the
    fast path neither overflows nor departs from predict_proba's 0 and 1."""
    model = LogisticRegression(solver="newton-cholesky").fit(X, Y)
    fast = fast_scorer(model, N)
    rows = np.vstack([X[:20] * 1e6, X[:20] * -1e6, X[:20] * 1e-9])
    expected = model.predict_proba(rows)[:, 1]
    assert {0.0, 1.0} <= set(expected.round(12))
    assert np.allclose([fast.score(row.tolist())[1] for row in rows], expected, rtol=0,
                       atol=1e-15)


def test_gradient_boosting_past_the_size_limit_keeps_its_own_method(monkeypatch):
    model = fitted("gb")
    assert fast_scorer(model, N) is not None
    nodes = sum(estimator.tree_.node_count for estimator in model.estimators_[:, 0])
    monkeypatch.setattr("ml_api.serving.fast_trees.MAX_TREE_NODES", nodes - 1)
    assert fast_scorer(model, N) is None


def test_gate_turns_away_the_exponential_loss_scored_as_log_loss(monkeypatch, caplog):
    """The gate's training-like rows catch expit(raw) in place of expit(2 raw)."""
    monkeypatch.setattr("ml_api.serving.fast_trees._factor", lambda model: 1.0)
    with caplog.at_level(logging.WARNING):
        assert fast_scorer(fitted("gb-exponential"), N) is None
    assert "disagrees with the estimator" in caplog.text


def test_a_fast_path_that_fails_to_build_leaves_the_model_serving(monkeypatch, caplog):
    def broken(estimator, n_features):
        raise TypeError("unsupported operand type(s) for /: 'float' and 'NoneType'")

    monkeypatch.setattr(fast_proba_module, "restated", broken)
    with caplog.at_level(logging.ERROR):
        model = LoadedModel(spec("lr-scaled"), fitted("lr-scaled"))
    assert model.fast_path is None and "could not be built" in caplog.text
    assert model.predict(X[0].tolist()) == (model.estimator.predict(X[:1])[0],
                                            model.estimator.predict_proba(X[:1])[0, 1])


@functools.cache
def _boundary(name: str) -> np.ndarray:
    return boundary_rows(loaded(name)._fast, X[:40])


@pytest.mark.parametrize("name", ["lr", "lr-scaled", "lr-scaled-no-std", "lr-no-intercept",
                                  "lr-l1-liblinear-raw"])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64),
                       min_size=N, max_size=N),
       near=st.floats(min_value=0.0, max_value=1.0))
def test_logistic_bound_from_the_magnitude_never_decides_what_the_sum_leaves_open(
        name, values, near):
    """The a-priori bound (from max |x|) may settle a row only where the exact bound (from
    sum |terms|) would: with it taken away (magnitude infinite), every answer is the same.
    Rows are pulled towards the decision boundary, where the two differ."""
    scorer = loaded(name)._fast
    boundary = _boundary(name)
    for row in (values, (boundary[int(near * (len(boundary) - 1))] * (1 + near * 1e-15))):
        row = [float(v) for v in row]
        magnitude = max(map(abs, row))
        with np.errstate(all="ignore"):
            fast, exact = scorer.score(row, magnitude), scorer.score(row, math.inf)
        assert fast[0] == exact[0] and (fast[1] == exact[1] or fast[0] is None)
