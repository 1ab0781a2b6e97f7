"""A headless Locust run against gunicorn on the real Redis and MariaDB (or, with --embedded, on
the embedded default: SQLite and each worker's in-process cache), with optional restarts of
Redis and MariaDB in the middle, and a count of what the database recorded against what the
load test sent.

    python -m load_test.run_locust --users 200 --duration 60
    python -m load_test.run_locust --users 200 --duration 60 --embedded
    python -m load_test.run_locust --users 100 --duration 600 --restart-redis-at 200 \\
        --restart-mysql-at 400            # the soak of the README's reliability section
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from load_test.bench import bench_backends, embedded_backends
from load_test.processes import ROOT, Gunicorn, settings_env

TOKEN = "load-token"
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


def restart_redis(down_seconds: float) -> None:
    subprocess.run(["redis-cli", "shutdown", "nosave"], capture_output=True)
    time.sleep(down_seconds)
    subprocess.run(REDIS_START, check=True)


def restart_mariadb(down_seconds: float) -> None:
    subprocess.run(["pkill", "-x", "mariadbd"])
    while subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True).returncode == 0:
        time.sleep(0.2)
    time.sleep(down_seconds)
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                    "/usr/sbin/mariadbd"], check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--spawn-rate", type=int, default=50)
    parser.add_argument("--duration", type=int, default=60, help="seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--embedded", action="store_true",
                        help="SQLite and in-process caches instead of MariaDB and Redis")
    parser.add_argument("--restart-redis-at", type=float, help="seconds into the run")
    parser.add_argument("--restart-mysql-at", type=float, help="seconds into the run")
    parser.add_argument("--down-seconds", type=float, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    if args.embedded and (args.restart_redis_at is not None or args.restart_mysql_at is not None):
        parser.error("--embedded runs without Redis and MariaDB: nothing to restart")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    report = args.out / f"locust-{stamp}.json"
    backends = embedded_backends() if args.embedded else bench_backends(
        "mysql+pymysql://root:@127.0.0.1:3306", "redis://127.0.0.1:6379/0")
    with backends as settings:
        env = {**settings_env(settings), "ADMIN_TOKEN": TOKEN,
               "LOGSTASH_HOST": "127.0.0.1", "LOGSTASH_PORT": "9"}
        with Gunicorn(env, workers=args.workers, log_path=args.out / f"locust-{stamp}.log") \
                as server:
            faults = []
            if args.restart_redis_at is not None:
                faults.append(threading.Timer(args.restart_redis_at, restart_redis,
                                              (args.down_seconds,)))
            if args.restart_mysql_at is not None:
                faults.append(threading.Timer(args.restart_mysql_at, restart_mariadb,
                                              (args.down_seconds,)))
            for fault in faults:
                fault.start()
            run = subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(ROOT / "load_test" / "locustfile.py"),
                 "--host", server.url, "--headless", "-u", str(args.users), "-r",
                 str(args.spawn_rate), "-t", f"{args.duration}s", "--only-summary",
                 "--csv", str(args.out / f"locust-{stamp}")],
                env={**os.environ, "ADMIN_TOKEN": TOKEN, "LOAD_REPORT": str(report)},
                capture_output=True, text=True)
            for fault in faults:
                fault.join()
            time.sleep(3)  # let the workers write anything they held during a fault
        sent = json.loads(report.read_text())
        engine = create_engine(settings.database_url)
        with engine.connect() as conn:
            experiment_id = conn.execute(text("SELECT id FROM experiments WHERE name = :n"),
                                         {"n": sent["experiment"]}).scalar()
            exposures = conn.execute(text("SELECT COUNT(*) FROM exposures WHERE "
                                          "experiment_id = :e"), {"e": experiment_id}).scalar()
            outcomes = conn.execute(text("SELECT COUNT(*) FROM outcomes WHERE "
                                         "experiment_id = :e"), {"e": experiment_id}).scalar()
        engine.dispose()
    print(run.stdout[-2500:] + run.stderr[-2500:])
    summary = {"backends": "embedded" if args.embedded else "real",
               "users": args.users, "duration_s": args.duration, "locust_exit": run.returncode,
               **sent["locust"],
               "uids_answered": sent["uids_answered"], "uids_sent": sent["uids_sent"],
               "exposures_recorded": exposures,
               "conversions_accepted": sent["conversions_accepted"],
               "conversions_sent": sent["conversions_sent"], "outcomes_recorded": outcomes,
               "decision": sent["results"]["decision"], "true_best": sent["true_best"]}
    print(json.dumps(summary, indent=2))
    (args.out / f"locust-{stamp}-summary.json").write_text(json.dumps(summary, indent=2))
    # No failure; the results name the group given the higher true rate; nothing answered is
    # lost and nothing is recorded that was not sent.
    decision = sent["results"]["decision"]
    ok = (run.returncode == 0 and summary["failures"] == 0
          and decision["outcome"] == "winner" and decision["winner"] == sent["true_best"]
          and sent["uids_answered"] <= exposures <= sent["uids_sent"]
          and sent["conversions_accepted"] <= outcomes <= sent["conversions_sent"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
