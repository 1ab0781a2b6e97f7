"""Gunicorn settings shared by `make run`, the tests, the benchmark and the container."""
import gc
import os
import shutil
import sys
import tempfile

wsgi_app = "ml_api:create_app()"
bind = os.environ.get("BIND", "127.0.0.1:5000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gthread keeps client connections alive between requests; the model call holds the GIL, so
# a few threads per worker are enough to overlap network waits (Redis, MySQL).
worker_class = "ml_api.gunicorn_worker.GracefulThreadWorker"  # gthread, refusing once stopping
logger_class = "ml_api.gunicorn_worker.ServiceLogger"  # no unasked-for access log
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 30
keepalive = 5
# No preload: every worker builds its own Redis and database clients after the fork.
preload_app = False
# Several instances run side by side in tests and benchmarks; none needs the control socket.
control_socket_disable = True
# Gunicorn's own logs and the service's as JSON lines (event_type "log") on stderr.
logconfig_dict = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"json": {"()": "ml_api.telemetry.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"}},
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {
        "ml_api": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}


# Prometheus multiprocess mode: every worker writes its metrics to files in this directory and
# /metrics adds them up. It must be in the environment before any worker imports
# prometheus_client, hence here, when gunicorn reads this file.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ml_api_prometheus_")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def on_starting(server):
    """Start with empty metrics, and refuse to start, with a clear message, when a model
    artifact fails its sha256 check. The embedded default (no DATABASE_URL) creates or
    migrates its SQLite file here, so it serves from a fresh checkout or image; a shared
    database is migrated once, by `init-db` (the compose file's `migrate` service)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))
    from ml_api.errors import ConfigurationError, ModelIntegrityError
    from ml_api.serving.registry import verify_all
    from ml_api.settings import Settings

    try:
        settings = Settings.from_env()
        settings.check()
        verify_all(settings.models_dir)
        if not settings.database_url:
            from ml_api.wiring import init_database
            init_database(settings)
        # Create the spool here, once, before the workers fork: workers that boot together
        # would otherwise race to create it and switch it to WAL.
        from ml_api.records.spool import Spool
        Spool(settings.spool_path)
    except (ModelIntegrityError, ConfigurationError) as exc:
        print(f"ml_api: refusing to start: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def post_worker_init(worker):
    """The objects a worker built at start-up (modules, models, clients) live as long as it
    does: gc.freeze() puts them out of the cyclic collector's reach. A full collection then
    walks only what requests left behind, instead of pausing the worker to re-check the
    whole heap."""
    gc.collect()
    gc.freeze()


def worker_exit(server, worker):
    """A worker that stops (deploy, restart, SIGTERM) first writes out what it holds only in
    memory: the events and metrics of its last requests (up to a shipper wake-up's worth,
    which a stop right after a burst would otherwise lose), its per-variant traffic counts,
    its queued shadow predictions."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("ml_api")
    if services is not None:  # the benchmark's bare app has none
        services.drain()
