"""How evenly the gunicorn workers share keep-alive clients: short wrk runs, each worker's
share of the requests served.

    python -m load_test.spread [--runs 10] [--duration 3] [--connections 8] [--workers 2]

The service runs under gunicorn with the project's configuration on the embedded default
(SQLite, in-process caches, trained demo models in a temporary folder). Each run opens its own
keep-alive connections (wrk), so each run is a fresh chance for one worker to take more of
them than its share. A worker's requests are its own counts of ml_api_requests_total, read
from its file in PROMETHEUS_MULTIPROC_DIR; its CPU share comes from /proc, as in bench.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

from load_test.bench import (embedded_backends, ensure_wrk, over_even, run_wrk, shares,
                             worker_cpu_seconds, wrk_env)
from load_test.processes import Gunicorn, settings_env

REQUESTS_METRIC = "ml_api_requests_total"
# The target: no worker serves more than this many times its even share of a run's requests.
SPREAD_BOUND = 1.25


def worker_requests(metrics_dir: Path, pids: list[int]) -> list[float]:
    """Requests each worker has counted so far (ml_api_requests_total, every label set)."""
    counts = []
    for pid in pids:
        path = metrics_dir / f"counter_{pid}.db"
        values = MmapedDict.read_all_values_from_file(str(path)) if path.exists() else []
        counts.append(sum(value for key, value, *_ in values
                          if json.loads(key)[1] == REQUESTS_METRIC))
    return counts


def connections_held(pids: list[int], port: int) -> list[int]:
    """Established connections to `port` that each worker holds (from /proc)."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            established.add(f"socket:[{fields[9]}]")
    held = []
    for pid in pids:
        links = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                links.append(os.readlink(fd))
            except OSError:  # closed meanwhile
                pass
        held.append(sum(link in established for link in links))
    return held


def measure_spread(wrk: str, server: Gunicorn, metrics_dir: Path, runs: int, duration: float,
                   connections: int, threads: int, env: dict[str, str]) -> list[dict]:
    """`runs` wrk runs, each with its own connections; every run's per-worker shares."""
    pids = server.worker_pids()
    # Warm-up runs until each worker has served some of a run: a worker still loading its
    # models when the server is first ready leaves every connection to the others.
    for _ in range(10):
        before = worker_requests(metrics_dir, pids)
        run_wrk(wrk, server.url, duration, connections, threads, env)
        time.sleep(0.5)
        if all(b > a for a, b in zip(before, worker_requests(metrics_dir, pids))):
            break
    results = []
    for _ in range(runs):
        requests, cpu = worker_requests(metrics_dir, pids), worker_cpu_seconds(pids)
        sample: list[int] = []
        timer = threading.Timer(duration / 2, lambda: sample.extend(
            connections_held(pids, server.port)))
        timer.start()
        result = run_wrk(wrk, server.url, duration, connections, threads, env)
        timer.join()
        time.sleep(0.5)  # every worker publishes its counts within 0.2 s
        served = [b - a for a, b in zip(requests, worker_requests(metrics_dir, pids))]
        spent = [b - a for a, b in zip(cpu, worker_cpu_seconds(pids))]
        results.append({"rps": round(result["rps"], 1), "failures": result["failures"],
                        "request_shares": shares(served), "cpu_shares": shares(spent),
                        "connections": sample,
                        "requests_over_even": over_even(shares(served))})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--users", type=int, default=200,
                        help="returning uids (few: every worker soon knows them all)")
    args = parser.parse_args(argv)

    wrk = ensure_wrk()
    metrics_dir = Path(tempfile.mkdtemp(prefix="ml_api_spread_metrics_"))
    with embedded_backends() as settings:
        env = {**settings_env(settings), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        with Gunicorn(env, workers=args.workers) as server:
            load = wrk_env(args, "spread", 0.0)
            results = measure_spread(wrk, server, metrics_dir, args.runs, args.duration,
                                     args.connections, args.threads, load)
    print(f"{args.workers} workers, wrk -t{args.threads} -c{args.connections} "
          f"{args.duration:g}s, {os.cpu_count()} cores")
    print(f"{'run':>3}{'req/s':>8}{'fails':>6}  {'connections':<13}{'request shares':<16}"
          f"{'CPU shares':<16}max/even")
    for i, run in enumerate(results, 1):
        print(f"{i:>3}{run['rps']:>8.0f}{run['failures']:>6}  "
              f"{'/'.join(map(str, run['connections'])):<13}"
              f"{'/'.join(f'{s:.2f}' for s in run['request_shares']):<16}"
              f"{'/'.join(f'{s:.2f}' for s in run['cpu_shares']):<16}"
              f"{run['requests_over_even']:.2f}")
    worst = max(run["requests_over_even"] for run in results)
    print(f"worst run: {worst:.2f} x even (target at most {SPREAD_BOUND})")
    return 0 if worst <= SPREAD_BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
