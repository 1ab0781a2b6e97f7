"""Run the service (or the benchmark's baseline) under gunicorn with the project's config file."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "ml_api" / "gunicorn_conf.py"
# The service's own variables: a child process gets only those the caller sets.
SERVICE_VARIABLES = {"DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "MODELS_DIR", "BIND",
                     "WEB_CONCURRENCY", "GUNICORN_THREADS", "DEFAULT_EXPERIMENT",
                     "EXPERIMENT_REFRESH_SECONDS", "ADMIN_TOKEN", "PROMETHEUS_MULTIPROC_DIR",
                     "LOGSTASH_HOST", "LOGSTASH_PORT", "LOGSTASH_PROTOCOL", "LOG_UID",
                     "SPOOL_PATH", "VAR_DIR"}


def settings_env(settings) -> dict[str, str]:
    """Environment variables that reproduce these Settings in a child process."""
    env = {"MODELS_DIR": str(settings.models_dir), "DATABASE_URL": settings.effective_database_url,
           "EXPERIMENT_REFRESH_SECONDS": str(settings.experiment_refresh_seconds),
           "DEFAULT_EXPERIMENT": settings.default_experiment,
           "ADMIN_TOKEN": settings.admin_token, "SPOOL_PATH": str(settings.spool_path)}
    if settings.redis_url:
        env.update(REDIS_URL=settings.redis_url, REDIS_PREFIX=settings.redis_prefix)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(url: str, path: str = "/ready") -> bool:
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Gunicorn:
    """gunicorn -c ml_api/gunicorn_conf.py [APP] on a free port, as the container runs it."""

    def __init__(self, env: dict[str, str], workers: int = 2, log_path: Path | None = None,
                 app: str | None = None, wrapper: list[str] | None = None):
        """wrapper: a command that runs the server's Python, e.g. valgrind and its options."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
        self._env = {**inherited, **env, "BIND": f"127.0.0.1:{self.port}",
                     "WEB_CONCURRENCY": str(workers)}
        self._log_path = log_path
        self._app = app
        self._wrapper = wrapper or []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30, wait_for: str = "/ready") -> "Gunicorn":
        """Start, and wait until wait_for answers 200 (/health when a backend is meant to be
        down)."""
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        command = self._wrapper + [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)]
        self.proc = subprocess.Popen(command + ([self._app] if self._app else []), cwd=ROOT,
                                     env=self._env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}")
            if _ready(self.url, wait_for):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not become ready")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Gunicorn":
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
