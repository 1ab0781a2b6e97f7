"""The benchmark command runs end to end (a short run): gunicorn on the real Redis and MariaDB,
wrk against the full path and the bare endpoint, the JSON summary, and its own cleanup."""
import json
import os
import subprocess
import sys
import time

import pymysql
import pytest
import redis
from load_test import bench, instructions, stages
from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER, REDIS_URL, \
    require_tool
from tests.helpers import FEATURES


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


def test_callgrind_counts_only_the_loop_that_instructions_measures():
    """load_test.instructions relies on --toggle-collect counting inside the measured loop
    only: twice the calls, twice the count, whatever the interpreter did before."""
    valgrind = require_tool("valgrind", "valgrind")
    loop = ("import collections, itertools; collections.deque(itertools.starmap("
            "lambda n: sum(range(n)), [(50,)] * {}), maxlen=0)")
    counts = []
    for calls in (500, 1000):
        done = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
                               f"--toggle-collect={instructions.TOGGLE}", sys.executable, "-S",
                               "-c", loop.format(calls)], capture_output=True, text=True,
                              check=True)
        counts.append(instructions.collected(done.stderr))
    assert counts[0] > 500 * 100  # each call runs a loop of 50 additions
    assert 1.9 < counts[1] / counts[0] < 2.1


def test_callgrind_control_zeroes_and_dumps_a_running_process(tmp_path):
    """The --server mode of load_test.instructions zeroes a running worker's counters after
    its warm-up and dumps them after the measured run: a dump then holds only what ran since
    the zeroing, and dump_summary reads its count."""
    valgrind = require_tool("valgrind", "valgrind")
    stop = tmp_path / "stop"
    child = ("import time, pathlib\n"
             "sum(range(5_000_000))\n"  # the warm-up: far more than the light loop below
             "print('ready', flush=True)\n"
             f"while not pathlib.Path({str(stop)!r}).exists():\n"
             "    sum(range(100)); time.sleep(0.01)\n")
    proc = subprocess.Popen([valgrind, "--tool=callgrind",
                             f"--callgrind-out-file={tmp_path}/callgrind.%p", sys.executable,
                             "-S", "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        instructions.callgrind_control("-d", proc.pid)
        with_warm_up = instructions.dump_summary(tmp_path / f"callgrind.{proc.pid}.1")
        instructions.callgrind_control("-z", proc.pid)
        time.sleep(1)
        instructions.callgrind_control("-d", proc.pid)
        after_zero = instructions.dump_summary(tmp_path / f"callgrind.{proc.pid}.2")
    finally:
        stop.touch()
        proc.wait(timeout=60)
    assert with_warm_up > 5_000_000 * 10
    assert 0 < after_zero < with_warm_up / 10
    with pytest.raises(RuntimeError, match="not detected"):  # gone: an error, not silence
        instructions.callgrind_control("-d", proc.pid)


def test_the_server_counts_environment_serves_both_apps_through_a_wrapper(tmp_path):
    """What --server runs under valgrind, run here through a shell wrapper that leaves a
    mark: the embedded environment it builds serves /predict on both apps, with the
    periodic work off."""
    import urllib.request

    from load_test.processes import Gunicorn

    env = instructions.embedded_env(tmp_path)
    assert env["SUPERVISOR_INTERVAL_SECONDS"] == "0"
    assert float(env["EXPERIMENT_REFRESH_SECONDS"]) >= 1e6
    body = json.dumps({"uid": "u1", "features": FEATURES}).encode()
    for app in (bench.BARE_APP, None):
        mark = tmp_path / f"wrapped-{app is None}"
        wrapper = ["sh", "-c", 'touch "$0" && exec "$@"', str(mark)]
        with Gunicorn(env, workers=1, log_path=tmp_path / "server.log", app=app,
                      wrapper=wrapper) as server:
            request = urllib.request.Request(f"{server.url}/predict", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        assert mark.exists()
        assert answer["score"] is not None and 0 <= answer["score"] <= 1
        assert ("group" in answer) == (app is None)  # the full app answers with its group


def test_the_instructions_child_runs_both_apps_natively():
    for name in ("bare", "full"):  # exits non-zero if a request does not answer 200
        subprocess.run([sys.executable, "-m", "load_test.instructions", "--child", name,
                        "--requests", "20"], check=True, timeout=120)


def test_the_cache_polluter_writes_one_byte_per_cache_line():
    from load_test.inprocess import CachePolluter

    polluter = CachePolluter(0.25)
    polluter()
    lines = polluter._buffer[::CachePolluter.LINE]
    assert len(lines) == 0.25 * 2**20 / 64 and set(lines) == {1}
    assert set(polluter._buffer[1:CachePolluter.LINE]) == {0}  # only one byte per line
    assert polluter.cpu_us(10) > 0


def test_stages_times_each_part_inside_real_requests(mysql_server, redis_prefix, tmp_path):
    """load_test.stages, a short run: every timer it puts in place is reached by a request
    (a renamed or bypassed function would leave its part at zero and its cost in a parent's
    'own lines'), no part comes out negative, and every function is unwrapped afterwards."""
    from ml_api import jsonio, payloads, prediction, routes
    from ml_api.prediction import PredictionResult

    before = (routes.read_json_body, routes.parse_predict_request, routes.json_response,
              prediction.feature_row, PredictionResult.to_dict)
    environ = dict(os.environ)
    assert stages.main(["--rounds", "2", "--calls", "300", "--out", str(tmp_path),
                        "--mysql-root", f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@"
                        f"{MYSQL_HOST}:{MYSQL_PORT}", "--redis-url", REDIS_URL]) == 0
    summary = json.loads(next(tmp_path.glob("stages-*.json")).read_text())
    assert summary["timers_hit"] == sorted(
        ["flask", "view", "body", "validate", "prediction", "experiment", "features",
         "assignment", "model", "health", "response", "middleware", "publishing"])
    timed = summary["parts_us_with_timers"]
    assert len(timed) == 15 and all(value >= 0 for value in timed.values()), timed
    assert summary["timers"]["calls_per_request"] == pytest.approx(13, abs=0.2)
    # With the timers' cost taken out of their callers' rows, the rows add up to about the
    # request timed without them (medians of separate rounds: not exactly).
    parts = summary["parts_us"]
    rows = sum(value for name, value in parts.items() if not name.startswith("background"))
    whole = summary["whole_request_us"]
    assert rows == pytest.approx(whole["full app, returning uid"], rel=0.25)
    loop = summary["sometimes"]
    assert loop["model alone in a loop, variation through scikit-learn's predict_proba (µs)"] > \
        loop["model alone in a loop, variation, fast path (µs)"]
    for write in ("a new uid", "an outcome"):  # each waits on MariaDB: CPU below wall time
        cpu = next(us for name, us in loop.items() if name.startswith(f"{write}, CPU"))
        wall = next(us for name, us in loop.items()
                    if name.startswith(write) and "(wall µs)" in name)
        assert 0 < cpu < wall, loop
    assert before == (routes.read_json_body, routes.parse_predict_request, routes.json_response,
                      prediction.feature_row, PredictionResult.to_dict)
    assert routes.read_json_body is jsonio.read_json_body
    assert prediction.feature_row is payloads.feature_row
    assert dict(os.environ) == environ  # nothing left set for the tests that follow
