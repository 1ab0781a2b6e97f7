"""The baselines of the benchmark, each a Flask app under the same gunicorn configuration:

- the bare endpoint: scikit-learn's own predict_proba on the same verified models, with no A/B
  work (no hashing, cache or database); it alternates the control and variation models per
  request, so its model mix matches a 50/50 experiment;
- hello: a Flask endpoint that answers a constant, the framework's own ceiling on these
  workers.
"""
from __future__ import annotations

import itertools

import numpy as np
from flask import Flask, jsonify, request

from ml_api.serving.registry import ModelRegistry
from ml_api.serving.training import CONTROL_KEY, VARIATION_KEY
from ml_api.settings import Settings


def create_bare_app() -> Flask:
    registry = ModelRegistry.load(Settings.from_env().models_dir)
    estimators = itertools.cycle([registry.get(CONTROL_KEY).estimator,
                                  registry.get(VARIATION_KEY).estimator])
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        body = request.get_json()
        estimator = next(estimators)
        proba = estimator.predict_proba(np.asarray([body["features"]], dtype=np.float64))[0]
        return jsonify(prediction=estimator.classes_[proba.argmax()].item(),
                       score=float(proba[1]))

    @app.get("/ready")
    def ready():
        return jsonify(status="ready")

    return app


def create_hello_app() -> Flask:
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        return jsonify(hello="world")

    @app.get("/ready")
    def ready():
        return jsonify(status="ready")

    return app
