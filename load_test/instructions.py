"""Instructions per request, full app against the bare endpoint, counted by valgrind's
callgrind: the same figure whatever else the machine is doing, so that a change of a few
percent in what a request costs can be seen at all (`make bench` on a shared machine moves
by more than that from one round to the next).

    python -m load_test.instructions [--requests 320]
    python -m load_test.instructions --server [--seconds 40]

Both apps are built as in `load_test.inprocess` (embedded default, demo models, events
discarded) and called as WSGI apps on one thread; callgrind counts only inside the measured
loop (`--toggle-collect` on the C function that drives it), after a warm-up in which every
uid got its group. Each app runs under valgrind in its own process, both at once: about two
minutes. Needs valgrind (Debian package `valgrind`). What it does not see: the HTTP server,
the kernel, and the cost of cache misses, which grows with the code a request runs through.

`--server` counts a whole gunicorn worker instead (the project's gunicorn_conf.py, one
worker of 4 threads, the embedded default, events written to a log file), driven by wrk at 4
connections: gunicorn's parsing, its event-loop thread and the hand-offs between threads,
and the shipper's writing are counted too, as in production. Callgrind's counters are
zeroed after a warm-up (`callgrind_control -z`) and dumped after the measured wrk run; the
count is divided by the requests wrk saw answered. Under valgrind a worker serves about 70
requests a second, so work done on a timer would be spread over far fewer requests than
at full speed: the catalog's reload and the supervisor are turned off (the shipper's
wake-up, 5 a second, stays). About four minutes; needs valgrind and wrk.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The loop runs inside itertools.starmap: callgrind collects while its C function runs.
TOGGLE = "starmap_next"
USERS = 200


def measured_loop(app_name: str, requests: int) -> None:
    """The child: build both apps, warm up, then the counted loop over one of them."""
    from load_test.inprocess import build_apps, call

    with tempfile.TemporaryDirectory(prefix="ml_api_instructions_") as workdir:
        # No catalog reload and no shipper wake-up inside the loop (valgrind runs ~50x slower).
        full, bare = build_apps(Path(workdir), experiment_refresh_seconds=1e9)
        full.extensions["ml_api"].request_events.shipper.wake_seconds = 1e9
        app = full if app_name == "full" else bare
        for i in range(2 * USERS):
            call(app, f"user-{i % USERS}")
        calls = [(app, f"user-{i % USERS}") for i in range(requests)]
        collections.deque(itertools.starmap(call, calls), maxlen=0)


def collected(stderr: str) -> int:
    """The instruction count callgrind reports at exit ('==123== Collected : 4567')."""
    match = re.search(r"Collected\s*:\s*([\d,]+)", stderr)
    if match is None:
        raise RuntimeError(f"no callgrind total in valgrind's output:\n{stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def require_valgrind() -> str:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("valgrind is needed: apt-get install valgrind")
    return valgrind


def count(requests: int) -> dict[str, float]:
    valgrind = require_valgrind()
    with tempfile.TemporaryDirectory(prefix="ml_api_callgrind_") as out:
        children = {
            name: subprocess.Popen(
                [valgrind, "--tool=callgrind", f"--toggle-collect={TOGGLE}",
                 f"--callgrind-out-file={out}/{name}.out", sys.executable, "-m",
                 "load_test.instructions", "--child", name, "--requests", str(requests)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for name in ("bare", "full")}
        results = {}
        for name, child in children.items():
            _, stderr = child.communicate()
            if child.returncode:
                raise RuntimeError(f"{name} failed under valgrind:\n{stderr[-2000:]}")
            results[name] = collected(stderr) / requests
    return results


SERVER_USERS = 200
SERVER_CONNECTIONS = 4


def callgrind_control(option: str, pid: int) -> None:
    """callgrind_control -z (zero the counters) or -d (dump them) for a running process. It
    exits 0 even when it finds no such process, so its output is checked."""
    done = subprocess.run(["callgrind_control", option, str(pid)], capture_output=True,
                          text=True)
    if done.returncode or "Error" in done.stdout + done.stderr:
        raise RuntimeError(f"callgrind_control {option} {pid}: {done.stdout}{done.stderr}")


def dump_summary(path: Path, timeout: float = 60) -> int:
    """The instruction count of one callgrind dump file ('summary: 4567'), once written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        match = re.search(r"^summary:\s*(\d+)", text, re.M)
        if match and "\ntotals:" in text:  # the last line callgrind writes
            return int(match.group(1))
        time.sleep(0.2)
    raise RuntimeError(f"no complete callgrind dump at {path}")


def embedded_env(workdir: Path) -> dict[str, str]:
    """The servers' environment: the embedded default in workdir, the demo models, and no
    work on a timer beyond the shipper's (see the module's docstring)."""
    from ml_api.settings import Settings
    from ml_api.training import train_demo_models
    from ml_api.wiring import init_database

    from load_test.processes import settings_env

    models = workdir / "models"
    train_demo_models(models)
    settings = Settings(database_url=f"sqlite:///{workdir}/db.sqlite3", models_dir=models,
                        spool_path=workdir / "spool.sqlite3", admin_token="instructions",
                        experiment_refresh_seconds=1e9)
    init_database(settings)
    # A worker loading scikit-learn under valgrind takes longer than the 30 s after which
    # the arbiter would replace it.
    return {**settings_env(settings), "SUPERVISOR_INTERVAL_SECONDS": "0",
            "GUNICORN_CMD_ARGS": "--timeout 900"}


def server_instructions(app: str | None, env: dict[str, str], home: Path, seconds: float,
                        warmup: float, wrk: str, valgrind: str) -> float:
    """Instructions per answered request of one gunicorn worker under callgrind."""
    from load_test.bench import run_wrk
    from load_test.processes import Gunicorn

    home.mkdir()
    wrk_env = {"WRK_USERS": str(SERVER_USERS), "WRK_RUN": "instructions"}
    # Without --trace-children, callgrind_control does not find the forked worker
    # (valgrind 3.19).
    wrapper = [valgrind, "--tool=callgrind", "--trace-children=yes",
               f"--callgrind-out-file={home}/callgrind.%p"]
    server = Gunicorn(env, workers=1, log_path=home / "server.log", app=app, wrapper=wrapper)
    with server.start(timeout=900):
        # Every uid meets the worker (its first exposure, then its memory tier).
        run_wrk(wrk, server.url, warmup, SERVER_CONNECTIONS, 1, wrk_env)
        (worker,) = server.worker_pids()
        callgrind_control("-z", worker)
        result = run_wrk(wrk, server.url, seconds, SERVER_CONNECTIONS, 1, wrk_env)
        callgrind_control("-d", worker)
        if result["failures"]:
            raise RuntimeError(f"{home.name}: {result['failures']} failed requests")
        return dump_summary(home / f"callgrind.{worker}.1") / result["requests"]


def count_server(seconds: float, warmup: float) -> dict[str, float]:
    valgrind = require_valgrind()
    from load_test.bench import BARE_APP, ensure_wrk

    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="ml_api_callgrind_server_") as out, \
            ThreadPoolExecutor(2) as pool:
        env = embedded_env(Path(out))
        futures = {name: pool.submit(server_instructions, app, env, Path(out) / name, seconds,
                                     warmup, wrk, valgrind)
                   for name, app in (("bare", BARE_APP), ("full", None))}
        return {name: future.result() for name, future in futures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--server", action="store_true",
                        help="count a gunicorn worker under wrk instead of the app alone")
    parser.add_argument("--seconds", type=float, default=40, help="--server: measured run")
    parser.add_argument("--warmup", type=float, default=30, help="--server: warm-up run")
    parser.add_argument("--child", choices=("bare", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        measured_loop(args.child, args.requests)
        return 0
    if args.server:
        per_request = count_server(args.seconds, args.warmup)
        what = f"one gunicorn worker under wrk for {args.seconds:g} s"
    else:
        per_request = count(args.requests)
        what = f"{args.requests} requests"
    bare, full = per_request["bare"], per_request["full"]
    print(f"instructions per request ({what}, callgrind): bare {bare:,.0f}, "
          f"full {full:,.0f}, full adds {full - bare:,.0f} ({full / bare:.3f}x the bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
