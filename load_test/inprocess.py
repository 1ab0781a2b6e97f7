"""CPU per request of the application alone: the full app and the bare endpoint called as WSGI
apps in this process, with no HTTP server, network or load generator sharing the cores.

    python -m load_test.inprocess [--threads 4] [--requests 8000] [--rounds 7]

Both apps are built on the embedded default (SQLite, in-process cache) with the demo models;
the full app's events go nowhere. Each round runs both apps on `--threads` threads (as a
gunicorn gthread worker does) and reads the process's CPU time, background threads included;
the table shows medians. It isolates what the application adds to a request, which the
wrk benchmark (`load_test.bench`) measures only through the noise of a shared machine.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

FEATURES = b"[17.99,10.38,122.8,1001.0,0.1184,0.2776,0.3001,0.1471,0.2419,0.07871]"


class Nowhere:
    """An event transport that discards what it is given (the app's events, unmeasured)."""

    def send(self, lines, use_logging=False) -> None:
        pass

    def close(self) -> None:
        pass


def build_apps(workdir: Path, **settings_overrides):
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(workdir / "prometheus"))
    (workdir / "prometheus").mkdir(exist_ok=True)
    from load_test.bare_app import create_bare_app
    from ml_api import create_app
    from ml_api.serving.training import train_demo_models
    from ml_api.settings import Settings
    from ml_api.wiring import init_database

    models = workdir / "models"
    train_demo_models(models)
    settings = Settings(database_url=f"sqlite:///{workdir}/db.sqlite3", models_dir=models,
                        spool_path=workdir / "spool.sqlite3", admin_token="inprocess",
                        supervisor_interval_seconds=0, **settings_overrides)
    init_database(settings)
    full = create_app(settings)
    full.extensions["ml_api"].request_events.shipper.transport = Nowhere()
    os.environ["MODELS_DIR"] = str(models)
    return full, create_bare_app()


def call(app, uid: str) -> None:
    body = b'{"uid":"' + uid.encode() + b'","features":' + FEATURES + b"}"
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "SCRIPT_NAME": "",
               "QUERY_STRING": "", "SERVER_NAME": "bench", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "bench",
               "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
               "wsgi.errors": sys.stderr, "wsgi.multithread": True,
               "wsgi.multiprocess": True, "wsgi.run_once": False}
    status = []
    result = app(environ, lambda line, headers, exc_info=None: status.append(line))
    try:
        for _ in result:
            pass
    finally:
        if hasattr(result, "close"):
            result.close()  # as a server does: the full app publishes its event here
    if not status[0].startswith("200"):
        raise RuntimeError(f"{uid}: {status[0]}")


def cpu_us_per_request(app, requests: int, threads: int, users: int) -> float:
    def worker(offset: int) -> None:
        for i in range(offset, requests, threads):
            call(app, f"user-{i % users}")

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    started = time.process_time()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return (time.process_time() - started) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--requests", type=int, default=8000, help="per app and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--users", type=int, default=2000, help="returning uids")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ml_api_inprocess_") as workdir:
        full, bare = build_apps(Path(workdir))
        for app in (full, bare):  # first assignments, lazy loading
            cpu_us_per_request(app, args.users, 1, args.users)
        cpu = {"bare": [], "full": []}
        for _ in range(args.rounds):
            for name, app in (("bare", bare), ("full", full)):
                cpu[name].append(cpu_us_per_request(app, args.requests, args.threads,
                                                    args.users))
    bare_us, full_us = statistics.median(cpu["bare"]), statistics.median(cpu["full"])
    print(f"{args.threads} thread(s), {args.requests} requests x {args.rounds} rounds"
          f", CPU per request (median): bare {bare_us:.0f} us, full {full_us:.0f} us, "
          f"full adds {full_us - bare_us:.0f} us ({bare_us / full_us:.2f}x the bare rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
