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

from ml_api.domain.models import ModelSpec
from ml_api.serving.loaded_model import LoadedModel
from ml_api.serving.registry import reference_of
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


# name -> (estimator, labels it is fitted on: "binary", "strings", "three";
#          "fast" when the fast path restates it, "own" when it keeps its own methods)
FAMILIES = {
    "lr": (_bare_lr(), "binary", "fast"),
    "lr-scaled": (_scaled({}), "binary", "fast"),
    "lr-scaled-no-std": (make_pipeline(StandardScaler(with_std=False), _bare_lr()),
                         "binary", "fast"),
    "lr-scaled-no-mean": (_scaled({"with_mean": False}), "binary", "fast"),
    "lr-scaled-neither": (make_pipeline(StandardScaler(with_mean=False, with_std=False),
                                        _bare_lr()), "binary", "fast"),
    "lr-balanced": (_scaled({}, class_weight="balanced", C=10.0), "binary", "fast"),
    "lr-no-intercept": (_bare_lr(fit_intercept=False), "binary", "fast"),
    "lr-l1-liblinear": (_scaled({}, l1_ratio=1.0, solver="liblinear", C=0.5), "binary", "fast"),
    "lr-l1-liblinear-no-intercept": (LogisticRegression(l1_ratio=1.0, solver="liblinear",
                                                        fit_intercept=False), "binary", "fast"),
    # L1 on the raw features drives liblinear's intercept to exactly 0.
    "lr-l1-liblinear-raw": (LogisticRegression(l1_ratio=1.0, solver="liblinear"),
                            "binary", "fast"),
    "lr-l1-saga": (_scaled({}, l1_ratio=1.0, solver="saga", C=0.5), "binary", "fast"),
    "lr-strings": (_scaled({}), "strings", "fast"),
    "gb": (_gb(), "binary", "fast"),
    "gb-exponential": (_gb(loss="exponential", learning_rate=0.5), "binary", "fast"),
    "gb-zero-init": (_gb(init="zero"), "binary", "fast"),
    "gb-exponential-zero-init": (_gb(loss="exponential", init="zero"), "binary", "fast"),
    "gb-depth-1": (_gb(max_depth=1, learning_rate=1.0), "binary", "fast"),
    "gb-depth-8": (_gb(max_depth=8, learning_rate=0.05), "binary", "fast"),
    "gb-depth-16": (_gb(max_depth=16, n_estimators=10, min_samples_leaf=1), "binary", "fast"),
    "gb-subsample": (_gb(subsample=0.5, learning_rate=0.3), "binary", "fast"),
    "gb-strings": (_gb(loss="exponential"), "strings", "fast"),
    "gb-stratified-init": (_gb(init=DummyClassifier(strategy="stratified", random_state=0)),
                           "binary", "own"),
    "gb-most-frequent-init": (_gb(init=DummyClassifier(strategy="most_frequent")),
                              "binary", "own"),
    "gb-lr-init": (_gb(init=_bare_lr()), "binary", "own"),
    "gb-multiclass": (_gb(n_estimators=10), "three", "own"),
    "lr-multiclass": (_bare_lr(), "three", "own"),
    "random-forest": (RandomForestClassifier(n_estimators=8, random_state=0), "binary", "own"),
    "extra-trees": (ExtraTreesClassifier(n_estimators=8, random_state=0), "binary", "own"),
    "hist-gb": (HistGradientBoostingClassifier(max_iter=10, random_state=0), "binary", "own"),
    "pipeline-3-steps": (make_pipeline(StandardScaler(), PCA(5), _lr()), "binary", "own"),
    "pipeline-minmax": (make_pipeline(MinMaxScaler(), _lr()), "binary", "own"),
}
RESTATED = {name for name, (_, _, path) in FAMILIES.items() if path == "fast"}


def labels(kind: str) -> np.ndarray:
    if kind == "strings":
        return LABELS[Y]
    if kind == "three":
        return (np.arange(len(Y)) % 3 + Y) % 3
    return Y


@functools.cache
def fitted(name: str):
    """The named estimator, fitted (once per process)."""
    estimator, kind, _ = FAMILIES[name]
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
