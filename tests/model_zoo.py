"""Estimators a user may bring, fitted once per test process on the demo data: the ones the
fast path restates and the ones that must keep their own methods."""
from __future__ import annotations

import functools
import warnings

import numpy as np
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from ml_api.serving.registry import LoadedModel, ModelSpec, reference_of
from ml_api.serving.training import demo_dataset

X, Y, NAMES = demo_dataset()
LABELS = np.array(["benign", "malignant"])


def _lr(**options):
    return LogisticRegression(max_iter=5000, **options)


def _bare_lr(**options):
    """On unscaled features lbfgs takes thousands of steps; Newton's method a few."""
    return LogisticRegression(solver="newton-cholesky", **options)


def _gb(**options):
    return GradientBoostingClassifier(n_estimators=options.pop("n_estimators", 15),
                                      random_state=0, **options)


def _scaled(scaler_options, **options):
    return make_pipeline(StandardScaler(**scaler_options), _lr(**options))


# name -> (estimator, labels it is fitted on: "binary", "strings", "three")
FAMILIES = {
    "lr": (_bare_lr(), "binary"),
    "lr-scaled": (_scaled({}), "binary"),
    "lr-scaled-no-std": (make_pipeline(StandardScaler(with_std=False), _bare_lr()), "binary"),
    "lr-scaled-no-mean": (_scaled({"with_mean": False}), "binary"),
    "lr-scaled-neither": (make_pipeline(StandardScaler(with_mean=False, with_std=False),
                                        _bare_lr()), "binary"),
    "lr-balanced": (_scaled({}, class_weight="balanced", C=10.0), "binary"),
    "lr-no-intercept": (_bare_lr(fit_intercept=False), "binary"),
    "lr-l1-liblinear": (_scaled({}, l1_ratio=1.0, solver="liblinear", C=0.5), "binary"),
    "lr-l1-liblinear-no-intercept": (LogisticRegression(l1_ratio=1.0, solver="liblinear",
                                                        fit_intercept=False), "binary"),
    # L1 on the raw features drives liblinear's intercept to exactly 0.
    "lr-l1-liblinear-raw": (LogisticRegression(l1_ratio=1.0, solver="liblinear"), "binary"),
    "lr-l1-saga": (_scaled({}, l1_ratio=1.0, solver="saga", C=0.5), "binary"),
    "lr-strings": (_scaled({}), "strings"),
    "gb": (_gb(), "binary"),
    "gb-exponential": (_gb(loss="exponential", learning_rate=0.5), "binary"),
    "gb-zero-init": (_gb(init="zero"), "binary"),
    "gb-exponential-zero-init": (_gb(loss="exponential", init="zero"), "binary"),
    "gb-depth-1": (_gb(max_depth=1, learning_rate=1.0), "binary"),
    "gb-depth-8": (_gb(max_depth=8, learning_rate=0.05), "binary"),
    "gb-depth-16": (_gb(max_depth=16, n_estimators=10, min_samples_leaf=1), "binary"),
    "gb-subsample": (_gb(subsample=0.5, learning_rate=0.3), "binary"),
    "gb-strings": (_gb(loss="exponential"), "strings"),
    # Keep their own methods:
    "gb-stratified-init": (_gb(init=DummyClassifier(strategy="stratified", random_state=0)),
                           "binary"),
    "gb-most-frequent-init": (_gb(init=DummyClassifier(strategy="most_frequent")), "binary"),
    "gb-lr-init": (_gb(init=_bare_lr()), "binary"),
    "gb-multiclass": (_gb(n_estimators=10), "three"),
    "lr-multiclass": (_bare_lr(), "three"),
    "random-forest": (RandomForestClassifier(n_estimators=8, random_state=0), "binary"),
    "extra-trees": (ExtraTreesClassifier(n_estimators=8, random_state=0), "binary"),
    "hist-gb": (HistGradientBoostingClassifier(max_iter=10, random_state=0), "binary"),
    "pipeline-3-steps": (make_pipeline(StandardScaler(), PCA(5), _lr()), "binary"),
    "pipeline-minmax": (make_pipeline(MinMaxScaler(), _lr()), "binary"),
}
RESTATED = [name for name in FAMILIES if list(FAMILIES).index(name)
            < list(FAMILIES).index("gb-stratified-init")]


def labels(kind: str) -> np.ndarray:
    if kind == "strings":
        return LABELS[Y]
    if kind == "three":
        return (np.arange(len(Y)) % 3 + Y) % 3
    return Y


@functools.cache
def fitted(name: str):
    """The named estimator, fitted (once per process)."""
    estimator, kind = FAMILIES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X[::2], labels(kind)[::2])  # half the rows: quicker to fit


def spec(name: str, version: str = "1") -> ModelSpec:
    return ModelSpec(name=name, version=version, path=f"{name}.joblib", sha256="",
                     feature_names=tuple(NAMES), reference=reference_of(X))


@functools.cache
def loaded(name: str) -> LoadedModel:
    """The named estimator as the service loads it (fast path checked), once per process."""
    return LoadedModel(spec(name), fitted(name))
