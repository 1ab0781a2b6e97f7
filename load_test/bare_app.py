"""The baseline of the benchmark: Flask calling the same verified models, with no A/B work.

It alternates the control and variation models per request, so its model mix matches a
50/50 experiment; no hashing, no cache, no database.
"""
from __future__ import annotations

import itertools

from flask import Flask, jsonify, request

from ml_api.serving.registry import ModelRegistry
from ml_api.serving.training import CONTROL_KEY, VARIATION_KEY
from ml_api.settings import Settings


def create_bare_app() -> Flask:
    registry = ModelRegistry.load(Settings.from_env().models_dir)
    models = itertools.cycle([registry.get(CONTROL_KEY), registry.get(VARIATION_KEY)])
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        body = request.get_json()
        prediction, score = next(models).predict(body["features"])
        return jsonify(prediction=prediction, score=score)

    @app.get("/ready")
    def ready():
        return jsonify(status="ready")

    return app
