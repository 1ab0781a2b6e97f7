"""Shared test helpers: demo feature rows and the environment of a gunicorn child process."""
from __future__ import annotations

from load_test.processes import ROOT, Gunicorn  # noqa: F401 (re-exported for tests)
from ml_api.training import demo_dataset

_X, _Y, FEATURE_NAMES = demo_dataset()
FEATURES = [float(v) for v in _X[0]]


def settings_env(settings) -> dict[str, str]:
    """Environment variables that reproduce these Settings in a child process."""
    env = {"MODELS_DIR": str(settings.models_dir), "DATABASE_URL": settings.effective_database_url,
           "EXPERIMENT_REFRESH_SECONDS": str(settings.experiment_refresh_seconds),
           "DEFAULT_EXPERIMENT": settings.default_experiment,
           "ADMIN_TOKEN": settings.admin_token, "SPOOL_PATH": str(settings.spool_path)}
    if settings.redis_url:
        env.update(REDIS_URL=settings.redis_url, REDIS_PREFIX=settings.redis_prefix)
    return env
