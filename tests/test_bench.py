"""The benchmark command runs end to end (a short run): gunicorn on the real Redis and MariaDB
and on the embedded default, the two baselines, wrk, the JSON summary with its ratios and
targets, and its own cleanup."""
import collections
import http.server
import json
import threading

import pymysql
import pytest
import redis

from load_test import bench, bench_results
from tests.conftest import (
    MYSQL_HOST,
    MYSQL_PASSWORD,
    MYSQL_PORT,
    MYSQL_USER,
    REDIS_URL,
    require_tool,
)

pytestmark = pytest.mark.slow


def test_each_ratio_is_the_median_of_the_rounds_ratios_and_is_checked_against_its_target():
    def runs(*values):
        return [{"rps": v, "p99_us": 1000 / v} for v in values]
    by_mix = {mix: {"full": runs(90, 100, 95), "hello": runs(100, 200, 100),
                    "bare": runs(50, 50, 50), "embedded": runs(90, 100, 95)}
              for mix in bench.MIXES}
    by_mix[bench.ALL_NEW] = {"full": runs(30, 80, 60)}
    ratios = bench.ratios(by_mix)
    assert ratios["returning"]["full_over_hello_throughput"] == 0.9  # of 0.9, 0.5, 0.95
    assert ratios["returning"]["full_over_bare_p99"] == pytest.approx(0.526, abs=1e-3)
    assert ratios["all_new_over_returning_throughput"] == 0.632  # of 0.33, 0.8, 0.63
    checks = {c["ratio"]: c["met"] for c in bench.target_checks(ratios)}
    assert checks == {"returning full_over_hello_throughput": True,
                      "returning full_over_bare_p99": True,
                      "10% new full_over_bare_p99": True,
                      "returning embedded_over_full_p99": True,
                      "10% new embedded_over_full_p99": True,
                      "all_new_over_returning_throughput": True}
    by_mix["returning"]["hello"] = runs(200, 200, 200)
    assert not bench.target_checks(bench.ratios(by_mix))[0]["met"]


def test_a_run_is_made_once_and_reports_each_workers_share_of_the_cpu(monkeypatch):
    """A lopsided run (70/30 of the workers' CPU) is kept, not made again: its shares say
    how lopsided, and the summary carries the most lopsided run of a row."""
    cpu, calls = [0.0, 0.0], []

    def run_wrk(*args):
        calls.append(args)
        cpu[0] += 0.7
        cpu[1] += 0.3
        return {"requests": 1000, "rps": 500.0, "p50_us": 1, "p95_us": 2, "p99_us": 3,
                "failures": 0}

    monkeypatch.setattr(bench, "worker_cpu_seconds", lambda pids: list(cpu))
    monkeypatch.setattr(bench, "run_wrk", run_wrk)

    class Server:
        url = "http://unused"

        def worker_pids(self):
            return [1, 2]

    args = type("Args", (), {"duration": 1, "connections": 8, "threads": 2})
    result = bench.run_measured("wrk", Server(), args, {})
    assert len(calls) == 1
    assert result["worker_cpu_shares"] == [0.7, 0.3]
    assert result["busiest_worker_over_even"] == 1.4
    assert result["worker_cpu_us"] == pytest.approx(1000)
    even = {**result, "busiest_worker_over_even": 1.02}
    assert bench.summarise([even, result, even])["busiest_worker_over_even"] == 1.4


def test_the_wrk_script_sends_each_new_uid_once_across_its_threads(tmp_path):
    """wrk at -t2 -c8 with only new uids, against a server that notes each body's uid."""
    seen = collections.Counter()

    class Recorder(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            seen[json.loads(self.rfile.read(int(self.headers["Content-Length"])))["uid"]] += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = bench.run_wrk(bench.ensure_wrk(), f"http://127.0.0.1:{server.server_port}",
                               1, 8, 2, {"WRK_NEW_SHARE": "1.0", "WRK_NEW_RUN": "once"})
    finally:
        server.shutdown()
    assert result["requests"] > 50 and sum(seen.values()) >= result["requests"]
    assert max(seen.values()) == 1
    assert {uid.split("-")[2] for uid in seen} == {"0", "1"}  # both threads sent


def bench_databases() -> set[str]:
    with pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                         password=MYSQL_PASSWORD) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'ml\\_api\\_bench\\_%'")
        return {row[0] for row in cur.fetchall()}


def test_bench_writes_its_summary_and_cleans_up(mysql_server, redis_prefix, tmp_path):
    require_tool("wrk", "wrk")
    mysql_root = f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{MYSQL_HOST}:{MYSQL_PORT}"
    assert bench.main(["--duration", "1", "--rounds", "1", "--warmup", "1", "--users", "50",
                       "--sweep", "1", "--mysql-root", mysql_root, "--redis-url", REDIS_URL,
                       "--out", str(tmp_path)]) == 0
    [path] = tmp_path.glob("predict-*.json")
    summary = json.loads(path.read_text())
    targets = summary["targets"]
    assert set(targets) == {"returning", "10% new", "all new"}
    assert set(targets["returning"]) == set(targets["10% new"]) == set(bench.LABELS)
    assert set(targets["all new"]) == {"full"}
    for rows in targets.values():
        for row in rows.values():
            assert row["requests"] > 0 and row["failures"] == 0
            assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
            assert len(row["runs"]) == 1 and len(row["rss_mib_per_worker"]) == 2
            assert row["worker_cpu_us_per_request"] > 0
            [run] = row["runs"]
            assert len(run["worker_cpu_shares"]) == 2
            assert sum(run["worker_cpu_shares"]) == pytest.approx(1, abs=0.01)
            assert row["busiest_worker_over_even"] == run["busiest_worker_over_even"] >= 1
    assert len(summary["checks"]) == len(bench.TARGETS)
    assert all(check["value"] > 0 for check in summary["checks"])
    assert all(1 <= runs <= 16 for runs in summary["warm_up_runs"].values())
    assert [row["workers"] for row in summary["scaling"]] == [1]
    assert summary["scaling"][0]["rps"] > 0
    # Its own database and Redis keys are gone (other runs may have theirs meanwhile).
    assert summary["backends"]["database"].startswith("ml_api_bench_")
    assert summary["backends"]["database"] not in bench_databases()
    leftover = redis.Redis.from_url(REDIS_URL).scan_iter(
        match=f"{summary['backends']['redis_prefix']}*")
    assert next(leftover, None) is None


def test_results_bench_reads_the_results_of_each_size(mysql_server, tmp_path):
    assert bench_results.main(["--sizes", "200,1000", "--calls", "3",
                               "--out", str(tmp_path)]) == 0
    [path] = tmp_path.glob("results-*.json")
    rows = json.loads(path.read_text())["rows"]
    assert [row["exposures"] for row in rows] == [200, 1000]
    assert all(0 < row["median_ms"] <= row["p95_ms"] for row in rows)
