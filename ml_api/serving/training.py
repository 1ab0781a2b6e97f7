"""Trains the two demo models (control and variation) on a data set shipped inside scikit-learn.

The data is the Wisconsin breast-cancer set, reduced to its ten "mean" measurements so a
request body stays readable. Control: standardised logistic regression. Variation: gradient
boosting. Both are saved with joblib and registered in the manifest with held-out metrics.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import joblib
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml_api.domain.models import ModelSpec
from ml_api.serving.registry import MANIFEST_NAME, read_manifest, register_model

CONTROL_KEY = "logreg@1"
VARIATION_KEY = "gboost@1"
N_FEATURES = 10


def demo_dataset():
    """(X, y, feature_names) of the ten "mean" features, names in snake_case."""
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names[:N_FEATURES]]
    return data.data[:, :N_FEATURES], data.target, names


def _held_out_metrics(model, x_test, y_test) -> dict:
    proba = model.predict_proba(x_test)[:, 1]
    return {
        "accuracy": round(float(accuracy_score(y_test, model.predict(x_test))), 4),
        "roc_auc": round(float(roc_auc_score(y_test, proba)), 4),
        "test_rows": int(len(y_test)),
    }


def train_demo_models(models_dir: Path) -> list[ModelSpec]:
    """Train, save and register both demo models; returns their manifest entries."""
    x, y, names = demo_dataset()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=42, stratify=y
    )
    candidates = [
        ("logreg", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
         "control: standardised logistic regression"),
        ("gboost", GradientBoostingClassifier(random_state=42),
         "variation: gradient boosting, 100 trees"),
    ]
    specs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, description in candidates:
            model.fit(x_train, y_train)
            artifact = Path(tmp) / f"{name}-1.joblib"
            joblib.dump(model, artifact)
            specs.append(register_model(
                models_dir, artifact, name=name, version="1", feature_names=names,
                metrics=_held_out_metrics(model, x_test, y_test), description=description,
            ))
    return specs


def demo_models_present(models_dir: Path) -> bool:
    if not (Path(models_dir) / MANIFEST_NAME).is_file():
        return False
    keys = {spec.key for spec in read_manifest(models_dir)}
    return {CONTROL_KEY, VARIATION_KEY} <= keys
