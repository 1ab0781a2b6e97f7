"""Keep-alive clients spread over the gunicorn workers: no worker takes every connection of a
pool opened at once, and clients beyond the workers' threads are still served."""
import pytest

from load_test import spread
from tests.conftest import require_tool
from tests.helpers import Gunicorn, settings_env

pytestmark = pytest.mark.slow

WRK_ENV = {"WRK_USERS": "200", "WRK_RUN": "spread"}  # few returning uids: caches warm at once


def spread_runs(settings, tmp_path, runs: int, connections: int) -> list[dict]:
    """Runs of wrk -t2 against gunicorn (2 workers of 4 threads), each with its own pool of
    keep-alive connections; every run's per-worker shares and connections held."""
    wrk = require_tool("wrk", "wrk")
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = {**settings_env(settings), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    with Gunicorn(env, workers=2, log_path=tmp_path / "g.log") as server:
        return spread.measure_spread(wrk, server, metrics, runs, 2, connections, 2, WRK_ENV)


def test_eight_keep_alive_connections_on_two_workers_give_each_worker_its_share(
        embedded_settings, tmp_path):
    """Each run opens 8 connections at once. Stock gthread could let the first worker to
    wake accept all of them, and the other worker served nothing for the whole run."""
    runs = spread_runs(embedded_settings, tmp_path, runs=5, connections=8)
    assert all(run["failures"] == 0 for run in runs), runs
    assert all(run["requests_over_even"] <= spread.SPREAD_BOUND for run in runs), runs


def test_more_keep_alive_connections_than_threads_are_all_accepted_and_served(
        embedded_settings, tmp_path):
    """20 connections on 2 workers of 4 threads (as Locust's 20 users straight to gunicorn):
    the 12 beyond the workers' shares are accepted too, none refused, reset or timed out."""
    [run] = spread_runs(embedded_settings, tmp_path, runs=1, connections=20)
    assert run["failures"] == 0, run
    assert sum(run["connections"]) == 20, run  # none left waiting in the listen queue
    assert min(run["request_shares"]) > 0, run
