"""Shared test helpers: a demo feature row and a real gunicorn process."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from ml_api.training import demo_dataset

ROOT = Path(__file__).resolve().parent.parent
_X, _Y, FEATURE_NAMES = demo_dataset()
# The service's own variables: a child process gets only those the test sets.
SERVICE_VARIABLES = {"DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "MODELS_DIR", "BIND",
                     "WEB_CONCURRENCY", "DEFAULT_EXPERIMENT", "EXPERIMENT_REFRESH_SECONDS"}
FEATURES = [float(v) for v in _X[0]]


def feature_rows(n: int) -> list[list[float]]:
    return [[float(v) for v in _X[i % len(_X)]] for i in range(n)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(settings) -> dict[str, str]:
    """Environment variables that reproduce these Settings in a child process."""
    env = {"MODELS_DIR": str(settings.models_dir), "DATABASE_URL": settings.effective_database_url,
           "EXPERIMENT_REFRESH_SECONDS": str(settings.experiment_refresh_seconds),
           "DEFAULT_EXPERIMENT": settings.default_experiment}
    if settings.redis_url:
        env.update(REDIS_URL=settings.redis_url, REDIS_PREFIX=settings.redis_prefix)
    return env


class Gunicorn:
    """gunicorn with the project's config file, on a free port, as the container runs it."""

    def __init__(self, env: dict[str, str], workers: int = 2, log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
        self._env = {**inherited, **env, "BIND": f"127.0.0.1:{self.port}",
                     "WEB_CONCURRENCY": str(workers)}
        self._log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "Gunicorn":
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "ml_api" / "gunicorn_conf.py")],
            cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}")
            try:
                if requests.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Gunicorn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
