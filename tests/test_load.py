"""Locust against gunicorn. Headless through `python -m load_test.run_locust`, on the
embedded default and on real Redis + MariaDB: no failure, no consumer changing group (the
locustfile counts that as a failure), the run's experiment names the group given the higher
true rate, and the database holds every answered exposure and accepted outcome. And the web
UI, started by `make locust` and driven through Chromium and its own form request."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from load_test import run_locust
from load_test.processes import free_port
from tests.helpers import ROOT, Gunicorn, headless, settings_env

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backends", ["embedded", "real"])
def test_headless_locust_run(request, backends, tmp_path, monkeypatch, capsys):
    if backends == "real":
        for fixture in ("mysql_server", "redis_prefix"):  # reachable, or skipped (CI: failed)
            request.getfixturevalue(fixture)
    monkeypatch.setenv("LOAD_USERS", "800")
    monkeypatch.setenv("LOAD_RATES", "control=0.05,variation=0.40")
    argv = ["--users", "20", "--spawn-rate", "20", "--duration", "15", "--out", str(tmp_path)]
    code = run_locust.main(argv + (["--embedded"] if backends == "embedded" else []))
    assert code == 0, capsys.readouterr().out[-4000:]
    summary = json.loads(next(tmp_path.glob("locust-*-summary.json")).read_text())
    assert summary["backends"] == backends
    assert summary["requests"] > 500 and summary["failures"] == 0
    assert summary["decision"]["outcome"] == "winner"
    assert summary["decision"]["winner"] == summary["true_best"] == "variation"
    assert summary["uids_answered"] <= summary["exposures_recorded"] <= summary["uids_sent"]
    assert summary["outcomes_recorded"] >= summary["conversions_accepted"] > 0
    stats = next(tmp_path.glob("locust-*_stats.csv"))
    rows = {r["Name"]: r for r in csv.DictReader(open(stats))}
    assert int(rows["/feedback"]["Request Count"]) > 0


def test_locust_web_ui_renders_and_runs_the_load_test(embedded_settings, tmp_path):
    """Locust as engineers run it (`make locust`), web UI on: Chromium renders the start
    form; the form's own request (POST /swarm) starts the population, whose figures the UI's
    stats endpoint serves with no failure; stopping it runs the locustfile's check of the
    results."""
    with Gunicorn(settings_env(embedded_settings), workers=2, log_path=tmp_path / "g.log") \
            as server:
        ui = f"http://127.0.0.1:{free_port()}"
        log = tmp_path / "locust.log"
        env = {**os.environ, "ADMIN_TOKEN": embedded_settings.admin_token, "LOAD_USERS": "300",
               "LOAD_SETTLE_SECONDS": "2.5"}
        # The README's `make locust`, aimed at this server, its UI on a free port.
        locust = subprocess.Popen(
            ["make", "-s", "locust", f"LOCUST_HOST={server.url}",
             f"LOCUST_ARGS=--web-host 127.0.0.1 --web-port {ui.rsplit(':', 1)[1]}"],
            env=env, cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            until(lambda: requests.get(ui, timeout=1).status_code == 200, log)
            dom = headless(ui, tmp_path / "profile", "--dump-dom")
            assert dom.returncode == 0, dom.stderr[-2000:]
            assert 'name="userCount"' in dom.stdout and 'name="host"' in dom.stdout
            started = requests.post(f"{ui}/swarm", data={"user_count": 10, "spawn_rate": 10,
                                                        "host": server.url}, timeout=10)
            assert started.json()["success"], started.text
            until(lambda: total(ui)["num_requests"] >= 300, log)
            report = requests.get(f"{ui}/stats/requests", timeout=5).json()
            assert report["state"] == "running" and report["user_count"] == 10
            assert {s["name"] for s in report["stats"]} >= {"/predict", "Aggregated"}
            assert report["errors"] == [] and total(ui)["num_failures"] == 0
            requests.post(f"{ui}/stop", timeout=30)
            until(lambda: "decision:" in log.read_text(), log)
        finally:
            os.killpg(locust.pid, signal.SIGTERM)  # make and the Locust it started
            locust.wait(timeout=30)
    said = log.read_text()
    assert "FAILED" not in said and "sample_ratio_mismatch" not in said, said[-3000:]


def test_a_run_that_ends_while_its_setup_waits_for_the_api_fails_with_the_reason():
    port = free_port()  # nothing listens there: /health never answers
    env = {**os.environ, "ADMIN_TOKEN": "any", "LOAD_WAIT_SECONDS": "60"}
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "load_test/locustfile.py", "--host",
         f"http://127.0.0.1:{port}", "--headless", "--only-summary", "-u", "2", "-r", "2",
         "-t", "2s"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    said = run.stdout + run.stderr
    assert run.returncode == 1, said[-3000:]
    assert "FAILED: the run ended before its experiment was set up" in said
    assert "Connection refused" in said and "Traceback" not in said, said[-3000:]


def total(ui: str) -> dict:
    stats = requests.get(f"{ui}/stats/requests", timeout=5).json()["stats"]
    return next(s for s in stats if s["name"] == "Aggregated")


def until(condition, log, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s; locust said:\n{log.read_text()[-3000:]}")
