"""Benchmark: POST /predict on four servers side by side, in one run on this machine.

    python -m load_test.bench [--duration 8] [--rounds 3] [--connections 8]

The servers, each under gunicorn with the project's configuration: the full A/B path on the
real Redis and MariaDB, the same on the embedded default (SQLite, in-process caches), a bare
Flask endpoint calling scikit-learn's predict_proba on the same models, and a Flask
hello-world. Each round runs every server back to back with returning uids, then with 10% of
requests from new uids, in an order that rotates by round; then the full path with only new
uids. Every ratio is the median over rounds of the ratio of two runs made seconds apart, so a
slow spell on this shared machine hits both. wrk drives the load (Debian package `wrk`,
installed by this command when missing and running as root).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pymysql
import redis

from load_test.processes import ROOT, Gunicorn, settings_env
from ml_api.serving.training import train_demo_models
from ml_api.settings import Settings
from ml_api.validation import PredictRequest
from ml_api.wiring import build_services, init_database

WRK_SCRIPT = ROOT / "load_test" / "wrk_predict.lua"
LABELS = {"full": "full path (Redis + MariaDB)", "embedded": "embedded default (SQLite)",
          "bare": "bare Flask + sklearn predict_proba", "hello": "Flask hello-world"}
APPS = {"bare": "load_test.bare_app:create_bare_app()",
        "hello": "load_test.bare_app:create_hello_app()"}
MIXES = {"returning": 0.0, "10% new": 0.1}
ALL_NEW = "all new"


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False,
                       stdout=subprocess.DEVNULL)
        path = shutil.which("wrk")
    if not path:
        sys.exit("wrk is needed: apt-get install wrk")
    return path


@contextmanager
def bench_backends(mysql_root: str, redis_url: str):
    """A private MariaDB database, Redis prefix and trained models; all removed afterwards."""
    name = f"ml_api_bench_{uuid.uuid4().hex[:10]}"
    host_part = mysql_root.split("://", 1)[1]
    creds, hostport = host_part.rsplit("@", 1)
    user, _, password = creds.partition(":")
    host, _, port = hostport.strip("/").partition(":")
    def admin():
        return pymysql.connect(host=host, port=int(port or 3306), user=user, password=password)

    with admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    prefix = f"ml_api_bench:{uuid.uuid4().hex[:10]}:"
    models = Path(tempfile.mkdtemp(prefix="ml_api_bench_models_"))
    try:
        train_demo_models(models)
        settings = Settings(database_url=f"{mysql_root.rstrip('/')}/{name}",
                            redis_url=redis_url, redis_prefix=prefix, models_dir=models,
                            spool_path=models / "spool.sqlite3", admin_token="bench")
        init_database(settings)
        yield settings
    finally:
        with admin() as conn, conn.cursor() as cur:  # a new connection: MariaDB may have restarted
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for i in range(0, len(keys), 5000):
            client.delete(*keys[i:i + 5000])
        shutil.rmtree(models, ignore_errors=True)


@contextmanager
def embedded_backends():
    """The embedded default (a SQLite file, each worker's in-process cache) in a temporary
    folder, with trained models; all removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ml_api_embedded_"))
    try:
        train_demo_models(folder)
        settings = Settings(database_url=f"sqlite:///{folder / 'ml_api.sqlite3'}",
                            models_dir=folder, spool_path=folder / "spool.sqlite3",
                            admin_token="bench")
        init_database(settings)
        yield settings
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def assign_returning_users(settings: Settings, run_id: str, users: int) -> None:
    """First assignment of every returning uid, through the service's own code path."""
    services = build_services(settings)
    features = [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: services.prediction.predict(
            PredictRequest(f"{run_id}-user-{i}", features, None)), range(users)))


MISS_SERIES = 'ml_api_assignment_cache_total{result="miss",tier="memory"}'
# Warm-up ends when a worker's memory tier missed for at most this share of a run's requests.
WARM_MISS_SHARE = 0.002


def memory_misses(url: str) -> float:
    """Returning uids not yet in a worker's memory tier (each costs a Redis GET), all workers."""
    time.sleep(0.5)  # every worker publishes its counts within 0.2 s
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(MISS_SERIES))


def warm_up(wrk: str, server: Gunicorn, args, env: dict[str, str]) -> int:
    """Runs of `--warmup` seconds until every worker has met the returning uids (the memory
    tier of a worker that has served for a while), at most 16; returns how many it took."""
    misses = memory_misses(server.url)
    for run in range(1, 17):
        result = run_wrk(wrk, server.url, args.warmup, args.connections, args.threads, env)
        before, misses = misses, memory_misses(server.url)
        if misses - before <= WARM_MISS_SHARE * result["requests"]:
            break
    return run


def shares(amounts: list[float]) -> list[float]:
    """Each worker's share of a run's total (all zeros when there was nothing)."""
    total = sum(amounts)
    return [round(a / total, 3) if total else 0.0 for a in amounts]


def over_even(worker_shares: list[float]) -> float:
    """The busiest worker's share over an even share: 1.0 is a perfect spread."""
    return round(max(worker_shares) * len(worker_shares), 3)


def run_wrk(wrk: str, url: str, duration: float, connections: int, threads: int,
            env: dict[str, str]) -> dict:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s",
               "-s", str(WRK_SCRIPT), url]
    out = subprocess.run(command, env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    result = json.loads(line.removeprefix("WRK_JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["failures"] = result["errors"] + result["non_2xx"]
    return result


def worker_cpu_seconds(pids: list[int]) -> list[float]:
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = []
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        seconds.append((int(fields[11]) + int(fields[12])) / ticks)  # utime + stime
    return seconds


def run_measured(wrk: str, server: Gunicorn, args, env: dict[str, str]) -> dict:
    """One wrk run, with each worker's share of the workers' CPU over it. The workers share
    wrk's keep-alive connections (ml_api/gunicorn_worker.py); the shares show how evenly."""
    pids = server.worker_pids()
    before = worker_cpu_seconds(pids)
    result = run_wrk(wrk, server.url, args.duration, args.connections, args.threads, env)
    spent = [after - start for start, after in zip(before, worker_cpu_seconds(pids))]
    result["worker_cpu_shares"] = shares(spent)
    result["busiest_worker_over_even"] = over_even(result["worker_cpu_shares"])
    # The workers' CPU (user + system, from /proc) per answered request: what one request
    # costs the server, steadier than req/s, which moves with whatever else shares the cores.
    result["worker_cpu_us"] = sum(spent) / max(result["requests"], 1) * 1e6
    return result


def rss_mib(pids: list[int]) -> list[float]:
    sizes = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(round(int(line.split()[1]) / 1024, 1))
    return sizes


def summarise(runs: list[dict]) -> dict:
    return {
        "rps": round(statistics.median(r["rps"] for r in runs), 1),
        "p50_ms": round(statistics.median(r["p50_us"] for r in runs) / 1000, 2),
        "p95_ms": round(statistics.median(r["p95_us"] for r in runs) / 1000, 2),
        "p99_ms": round(statistics.median(r["p99_us"] for r in runs) / 1000, 2),
        "worker_cpu_us_per_request": round(statistics.median(r["worker_cpu_us"] for r in runs)),
        "failures": sum(r["failures"] for r in runs),
        "busiest_worker_over_even": max(r["busiest_worker_over_even"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
    }


def paired_ratio(numerator: list[dict], denominator: list[dict], field: str) -> float:
    """The median over rounds of one run's figure over another's (the two runs of a round
    are seconds apart, so a slow spell of a shared machine hits both)."""
    return round(statistics.median(n[field] / d[field]
                                   for n, d in zip(numerator, denominator)), 3)


def ratios(runs: dict[str, dict[str, list[dict]]]) -> dict:
    """The ratios the targets are stated in, each the median of the rounds' ratios."""
    result = {}
    for mix in MIXES:
        by_server = runs[mix]
        result[mix] = {
            "full_over_hello_throughput": paired_ratio(by_server["full"], by_server["hello"],
                                                       "rps"),
            "full_over_bare_p99": paired_ratio(by_server["full"], by_server["bare"], "p99_us"),
            "embedded_over_full_p99": paired_ratio(by_server["embedded"], by_server["full"],
                                                   "p99_us"),
        }
    result["all_new_over_returning_throughput"] = paired_ratio(
        runs[ALL_NEW]["full"], runs["returning"]["full"], "rps")
    return result


# (where in the ratios, the bound, whether the ratio must be at least or at most it)
TARGETS = [(("returning", "full_over_hello_throughput"), 0.8, "at least"),
           (("returning", "full_over_bare_p99"), 1.3, "at most"),
           (("10% new", "full_over_bare_p99"), 1.3, "at most"),
           (("returning", "embedded_over_full_p99"), 1.5, "at most"),
           (("10% new", "embedded_over_full_p99"), 1.5, "at most"),
           (("all_new_over_returning_throughput",), 0.6, "at least")]


def target_checks(summary_ratios: dict) -> list[dict]:
    checks = []
    for path, bound, sense in TARGETS:
        value = summary_ratios
        for key in path:
            value = value[key]
        met = value >= bound if sense == "at least" else value <= bound
        checks.append({"ratio": " ".join(path), "value": value, "bound": bound,
                       "sense": sense, "met": met})
    return checks


def print_table(summary: dict) -> None:
    for mix, rows in summary["targets"].items():
        print(f"\n{mix} uids{'':<27}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'fails':>7}"
              f"{'CPU us/req':>12}  RSS/worker MiB  busiest worker's CPU / even, by run")
        for name, row in rows.items():
            print(f"{LABELS[name]:<38}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}"
                  f"{row['p99_ms']:>9.2f}{row['failures']:>7}"
                  f"{row['worker_cpu_us_per_request']:>12}  {row['rss_mib_per_worker']}  "
                  + " ".join(f"{run['busiest_worker_over_even']:.2f}" for run in row["runs"]))
    print(f"\nratios, median over {summary['rounds']} rounds ({summary['config']}):")
    for check in summary["checks"]:
        print(f"  {check['ratio']:<45}{check['value']:>7.2f}  target {check['sense']} "
              f"{check['bound']}: {'met' if check['met'] else 'NOT met'}")
    for row in summary["scaling"]:
        print(f"full path, {row['workers']} worker(s): {row['rps']:.0f} req/s, "
              f"p99 {row['p99_ms']:.2f} ms, {row['failures']} failures")


def wrk_env(args, run_id: str, new_share: float) -> dict[str, str]:
    """A run's uids: the returning population, and new uids no earlier run has sent."""
    return {"WRK_USERS": str(args.users), "WRK_RUN": run_id, "WRK_NEW_SHARE": str(new_share),
            "WRK_NEW_RUN": f"{run_id}-{uuid.uuid4().hex[:8]}"}


def measure(wrk: str, servers: dict[str, Gunicorn], args, run_id: str
            ) -> dict[str, dict[str, list[dict]]]:
    """Rounds of every server in each mix, back to back, in an order that rotates by round;
    then the full path with only new uids."""
    runs: dict[str, dict[str, list[dict]]] = {
        mix: {name: [] for name in servers} for mix in MIXES}
    runs[ALL_NEW] = {"full": []}
    names = list(servers)
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for mix, share in MIXES.items():
            for name in order:
                runs[mix][name].append(run_measured(wrk, servers[name], args,
                                                    wrk_env(args, run_id, share)))
        runs[ALL_NEW]["full"].append(run_measured(wrk, servers["full"], args,
                                                  wrk_env(args, run_id, 1.0)))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5,
                        help="seconds per warm-up run (repeated until the workers know the uids)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--gunicorn-threads", type=int, default=None,
                        help="threads per worker (default: gunicorn_conf.py's)")
    parser.add_argument("--users", type=int, default=5000, help="returning uids")
    parser.add_argument("--mysql-root", default=os.environ.get(
        "BENCH_MYSQL_ROOT", "mysql+pymysql://root:@127.0.0.1:3306"))
    parser.add_argument("--redis-url", default=os.environ.get(
        "BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--sweep", default="",
                        help="worker counts for a scaling run of the full path, e.g. 1,2,4")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)

    wrk = ensure_wrk()
    args.out.mkdir(parents=True, exist_ok=True)
    # The services log one event line per request: each run replaces the previous run's
    # logs instead of adding to them.
    for name in (*LABELS, "sweep"):
        (args.out / f"{name}.log").unlink(missing_ok=True)
    run_id = f"b{uuid.uuid4().hex[:6]}"
    with bench_backends(args.mysql_root, args.redis_url) as real, \
            embedded_backends() as embedded:
        backends = {"database": real.database_url.rsplit("/", 1)[1],
                    "redis_prefix": real.redis_prefix}  # removed at the end, as they say
        envs = {"full": settings_env(real), "embedded": settings_env(embedded),
                "bare": settings_env(real), "hello": settings_env(real)}
        for env in envs.values():
            if args.gunicorn_threads:
                env["GUNICORN_THREADS"] = str(args.gunicorn_threads)
        servers = {name: Gunicorn(envs[name], workers=args.workers, app=APPS.get(name),
                                  log_path=args.out / f"{name}.log").start()
                   for name in LABELS}
        try:
            # Every returning uid gets its first assignment through the service's own code,
            # then each service is run until its workers have met the returning uids (the
            # memory tier of a worker that has served for a while).
            warm_up_runs = {}
            for name, settings in (("full", real), ("embedded", embedded)):
                assign_returning_users(settings, run_id, args.users)
                warm_up_runs[name] = warm_up(wrk, servers[name], args,
                                             wrk_env(args, run_id, 0.0))
            for name in ("bare", "hello"):
                run_wrk(wrk, servers[name].url, args.warmup, args.connections, args.threads,
                        wrk_env(args, run_id, 0.0))
            runs = measure(wrk, servers, args, run_id)
            rss = {name: rss_mib(server.worker_pids()) for name, server in servers.items()}
        finally:
            for server in servers.values():
                server.stop()
        scaling = []
        for workers in [int(w) for w in args.sweep.split(",") if w]:
            with Gunicorn(envs["full"], workers=workers,
                          log_path=args.out / "sweep.log") as server:
                run_wrk(wrk, server.url, 2, args.connections, args.threads,
                        wrk_env(args, run_id, 0.0))
                result = run_measured(wrk, server, args, wrk_env(args, run_id, 0.0))
            scaling.append({"workers": workers, "rps": round(result["rps"], 1),
                            "p99_ms": round(result["p99_us"] / 1000, 2),
                            "failures": result["failures"]})

    targets = {mix: {name: {**summarise(server_runs), "rss_mib_per_worker": rss[name],
                            "runs": server_runs}
                     for name, server_runs in by_server.items()}
               for mix, by_server in runs.items()}
    summary_ratios = ratios(runs)
    summary = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": f"{args.workers} gunicorn workers, wrk -t{args.threads} -c{args.connections} "
                  f"{args.duration:g}s, {args.users} returning uids, {os.cpu_count()} cores",
        "rounds": args.rounds,
        "backends": backends,
        "targets": targets,
        "ratios": summary_ratios,
        "checks": target_checks(summary_ratios),
        "warm_up_runs": warm_up_runs,
        "scaling": scaling,
    }
    path = args.out / f"predict-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    print(f"summary written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
