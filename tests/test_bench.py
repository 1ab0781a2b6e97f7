"""The benchmark command runs end to end (a short run): gunicorn on the real Redis and MariaDB,
wrk against the full path and the bare endpoint, the JSON summary, and its own cleanup."""
import json

import pymysql
import pytest
import redis

from load_test import bench
from tests.conftest import (
    MYSQL_HOST,
    MYSQL_PASSWORD,
    MYSQL_PORT,
    MYSQL_USER,
    REDIS_URL,
    require_tool,
)

pytestmark = pytest.mark.slow


def test_paired_ratios_take_the_median_of_each_rounds_ratio():
    bare = [{"rps": 100, "p99_us": 10, "worker_cpu_us": 200},
            {"rps": 200, "p99_us": 10, "worker_cpu_us": 100},
            {"rps": 100, "p99_us": 20, "worker_cpu_us": 200}]
    full = [{"rps": 90, "p99_us": 12, "worker_cpu_us": 220},
            {"rps": 100, "p99_us": 30, "worker_cpu_us": 200},
            {"rps": 95, "p99_us": 20, "worker_cpu_us": 250}]
    ratios = bench.paired_ratios(bare, full)
    assert ratios["throughput"] == 0.9  # of 0.9, 0.5 and 0.95
    assert ratios["p99"] == 1.2  # of 1.2, 3.0 and 1.0
    assert ratios["worker_cpu"] == 1.25  # of 1.1, 2.0 and 1.25
    assert len(ratios["per_round"]) == 3


def test_an_uneven_run_is_made_again_and_the_most_even_one_kept(monkeypatch):
    """Workers' CPU shares of successive runs: 70/30, 60/40, 58/42, 80/20 (all past 55%):
    four runs, the 58/42 one kept; a 52/48 run ends the retries at once."""
    def scripted(shares):
        cpu, runs = [0.0, 0.0], iter(shares)

        def worker_cpu_seconds(pids):
            return list(cpu)

        def run_wrk(*args):
            share = next(runs)
            cpu[0] += share
            cpu[1] += 1 - share
            return {"requests": 1000, "share_given": share}

        monkeypatch.setattr(bench, "worker_cpu_seconds", worker_cpu_seconds)
        monkeypatch.setattr(bench, "run_wrk", run_wrk)

    class Server:
        url = "http://unused"

        def worker_pids(self):
            return [1, 2]

    args = type("Args", (), {"duration": 1, "connections": 16, "threads": 2})
    scripted([0.7, 0.4, 0.42, 0.8])
    kept = bench.run_balanced("wrk", Server(), args, {})
    assert kept["share_given"] == 0.42 and kept["busiest_worker_share"] == 0.58
    assert kept["reruns"] == 3
    scripted([0.52, 0.9])
    kept = bench.run_balanced("wrk", Server(), args, {})
    assert kept["share_given"] == 0.52 and kept["reruns"] == 0


def bench_databases() -> set[str]:
    with pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                         password=MYSQL_PASSWORD) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'ml\\_api\\_bench\\_%'")
        return {row[0] for row in cur.fetchall()}


def test_bench_writes_its_summary_and_cleans_up(mysql_server, redis_prefix, tmp_path):
    require_tool("wrk", "wrk")
    mysql_root = f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{MYSQL_HOST}:{MYSQL_PORT}"
    assert bench.main(["--duration", "1", "--rounds", "2", "--warmup", "1", "--users", "50",
                       "--sweep", "1", "--mysql-root", mysql_root, "--redis-url", REDIS_URL,
                       "--out", str(tmp_path)]) == 0
    [path] = tmp_path.glob("predict-*.json")
    summary = json.loads(path.read_text())
    targets = summary["targets"]
    assert set(targets) == {"bare Flask + same models", "POST /predict (full A/B path)"}
    for row in targets.values():
        assert row["requests"] > 0 and row["failures"] == 0
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert len(row["runs"]) == 2 and len(row["rss_mib_per_worker"]) == 2
        assert row["worker_cpu_us_per_request"] > 0
    assert summary["ratios"]["throughput"] > 0 and len(summary["ratios"]["per_round"]) == 2
    assert 1 <= summary["warm_up_runs"] <= 16
    assert 0 <= targets["POST /predict (full A/B path)"]["memory_tier_miss_share"] < 0.5
    assert [row["workers"] for row in summary["scaling"]] == [1]
    assert summary["scaling"][0]["rps"] > 0
    # Its own database and Redis keys are gone (other runs may have theirs meanwhile).
    assert summary["backends"]["database"].startswith("ml_api_bench_")
    assert summary["backends"]["database"] not in bench_databases()
    leftover = redis.Redis.from_url(REDIS_URL).scan_iter(
        match=f"{summary['backends']['redis_prefix']}*")
    assert next(leftover, None) is None
