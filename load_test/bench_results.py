"""Benchmark: GET /experiments/<name>/results as recorded exposures grow (10^4 .. 10^7), on the
real MariaDB, through gunicorn. Results read counters, so their cost should not grow.

    python -m load_test.bench_results [--sizes 10000,100000,1000000,10000000] [--calls 50]

Exposures (and outcomes for 10% of them) are bulk-inserted with MariaDB's SEQUENCE engine,
and the counters are rebuilt from those raw rows, as `python -m ml_api reconcile` checks them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, text

from load_test.bench import bench_backends
from load_test.processes import ROOT, Gunicorn, settings_env
from ml_api.records.engine import SHARDS
from ml_api.records.exposures import ExposureStore

TOKEN = "bench"  # bench_backends' admin token


CHUNK = 1_000_000


def fill(engine, experiment_id: int, start: int, count: int) -> None:
    """Insert `count` more exposures (uid b<i>, variants alternating) and outcomes for 10%."""
    for chunk_start in range(start, start + count, CHUNK):
        fill_chunk(engine, experiment_id, chunk_start, min(CHUNK, start + count - chunk_start))


def fill_chunk(engine, experiment_id: int, start: int, count: int) -> None:
    end = start + count - 1
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO exposures (experiment_id, uid, variant, first_seen) "
            f"SELECT :e, CONCAT('b', seq), IF(seq % 2, 'control', 'variation'), NOW(6) "
            f"FROM seq_{start}_to_{end}"), {"e": experiment_id})
        conn.execute(text(
            "INSERT INTO outcomes (experiment_id, uid, variant, metric, value, created_at) "
            f"SELECT :e, CONCAT('b', seq), IF(seq % 2, 'control', 'variation'), 'conversion', 1,"
            f" NOW(6) FROM seq_{start}_to_{end} WHERE seq % 10 = 0"), {"e": experiment_id})
        conn.execute(text(
            "INSERT INTO user_metrics (experiment_id, uid, metric, variant, total, events) "
            f"SELECT :e, CONCAT('b', seq), 'conversion', IF(seq % 2, 'control', 'variation'), "
            f"1, 1 FROM seq_{start}_to_{end} WHERE seq % 10 = 0"), {"e": experiment_id})


def rebuild_counters(engine, events: ExposureStore, experiment_id: int) -> None:
    """Counters = the raw rows' recount, put in shard 0 (the other shards zeroed)."""
    exposures, sums = events.recount(experiment_id, "conversion")
    with engine.begin() as conn:
        conn.execute(text("UPDATE variant_counters SET exposures = 0, expected = 0 "
                          "WHERE experiment_id = :e"), {"e": experiment_id})
        conn.execute(text("DELETE FROM variant_metrics WHERE experiment_id = :e"),
                     {"e": experiment_id})
        total = sum(exposures.values())
        for variant, n in exposures.items():
            conn.execute(text("UPDATE variant_counters SET exposures = :n, expected = :x "
                              "WHERE experiment_id = :e AND variant = :v AND shard = 0"),
                         {"n": n, "x": total / 2, "e": experiment_id, "v": variant})
        for variant, s in sums.items():
            for shard in range(SHARDS):
                conn.execute(text(
                    "INSERT INTO variant_metrics (experiment_id, variant, metric, shard, "
                    "users, events, total, total_sq) "
                    "VALUES (:e, :v, 'conversion', :s, :u, :n, :t, :q)"),
                    {"e": experiment_id, "v": variant, "s": shard,
                     "u": s.users if shard == 0 else 0, "n": s.events if shard == 0 else 0,
                     "t": s.total if shard == 0 else 0, "q": s.total_sq if shard == 0 else 0})


def time_results(url: str, calls: int) -> list[float]:
    request = urllib.request.Request(f"{url}/experiments/demo/results",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            body = json.loads(response.read())
        timings.append((time.perf_counter() - started) * 1000)
    return timings, body


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with bench_backends("mysql+pymysql://root:@127.0.0.1:3306",
                        "redis://127.0.0.1:6379/0") as settings:
        bulk_engine = create_engine(settings.database_url)  # no read timeout for bulk loads
        events = ExposureStore(bulk_engine)
        with bulk_engine.connect() as conn:
            experiment_id = conn.execute(text("SELECT id FROM experiments WHERE name='demo'")
                                         ).scalar()
        env = settings_env(settings)
        with Gunicorn(env, workers=2, log_path=args.out / "results.log") as server:
            recorded = 0
            for size in sizes:
                started = time.perf_counter()
                fill(bulk_engine, experiment_id, recorded + 1, size - recorded)
                recorded = size
                rebuild_counters(bulk_engine, events, experiment_id)
                load_s = time.perf_counter() - started
                timings, body = time_results(server.url, args.calls)
                exposures = sum(v["exposures"] for v in body["variants"])
                assert exposures == size, (exposures, size)
                rows.append({"exposures": size, "median_ms": round(statistics.median(timings), 2),
                             "p95_ms": round(sorted(timings)[int(0.95 * len(timings)) - 1], 2),
                             "load_seconds": round(load_s, 1)})
                print(f"{size:>10,} exposures: results median {rows[-1]['median_ms']} ms, "
                      f"p95 {rows[-1]['p95_ms']} ms (filled in {load_s:.0f} s)", flush=True)
    path = args.out / f"results-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"calls_per_size": args.calls, "rows": rows}, indent=2) + "\n")
    print(f"summary written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
