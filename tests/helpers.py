"""Shared test helpers: demo feature rows; the gunicorn runner and its environment."""
from __future__ import annotations

from load_test.processes import ROOT, Gunicorn, settings_env  # noqa: F401 (re-exported)
from ml_api.training import demo_dataset

_X, _Y, FEATURE_NAMES = demo_dataset()
FEATURES = [float(v) for v in _X[0]]

