"""An admin change made through one gunicorn worker takes effect on the next request of every
worker of the host, however long the catalog's refresh interval."""
import dataclasses
import subprocess
import sys

import requests

from ml_api.experiments.catalog import ExperimentCatalog
from ml_api.experiments.change_signal import ChangeSignal
from tests.helpers import FEATURES, Gunicorn, settings_env


def test_a_notify_in_another_process_is_seen_here(tmp_path):
    signal = ChangeSignal.beside(tmp_path / "spool.sqlite3")
    before = signal.value()
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "from ml_api.experiments.change_signal import ChangeSignal; "
                    "ChangeSignal.beside(Path(sys.argv[1])).notify()",
                    str(tmp_path / "spool.sqlite3")], check=True)
    assert signal.value() != before
    # A second opening (a new worker) keeps the value instead of clearing it.
    assert ChangeSignal.beside(tmp_path / "spool.sqlite3").value() == signal.value()


def test_catalogs_reload_on_a_signalled_change_only(tmp_path):
    database = {"status": "draft"}
    loads = []

    def load():
        loads.append(database["status"])
        return []

    path = tmp_path / "spool.sqlite3"
    first = ExperimentCatalog(load, refresh_seconds=3600, signal=ChangeSignal.beside(path))
    second = ExperimentCatalog(load, refresh_seconds=3600, signal=ChangeSignal.beside(path))
    first.refresh(), second.refresh()
    second._maybe_refresh()
    assert loads == ["draft", "draft"]  # within the interval and nothing signalled
    database["status"] = "running"
    first.changed()
    second._maybe_refresh()
    second._maybe_refresh()
    assert loads == ["draft", "draft", "running", "running"]  # one reload each


def test_a_start_through_one_worker_is_seen_by_the_other_at_once(real_settings, admin_headers,
                                                                  tmp_path):
    settings = dataclasses.replace(real_settings, experiment_refresh_seconds=3600)
    with Gunicorn(settings_env(settings), workers=2, log_path=tmp_path / "g.log") as server:
        created = requests.post(f"{server.url}/experiments", headers=admin_headers, json={
            "name": "signalled", "variants": [
                {"name": "control", "model": "logreg@1", "weight": 50},
                {"name": "variation", "model": "gboost@1", "weight": 50}]})
        assert created.status_code == 201, created.text
        # Both workers load the draft (new connections land on either worker).
        for i in range(20):
            drafted = requests.post(f"{server.url}/predict", json={
                "uid": f"d-{i}", "features": FEATURES, "experiment": "signalled"})
            assert drafted.status_code == 200 and drafted.json()["group"] == "control"
        started = requests.post(f"{server.url}/experiments/signalled/start",
                                headers=admin_headers)
        assert started.status_code == 200, started.text
        groups = set()
        for i in range(40):  # a new connection each: both workers answer
            answer = requests.post(f"{server.url}/predict", json={
                "uid": f"s-{i}", "features": FEATURES, "experiment": "signalled"})
            assert answer.status_code == 200
            groups.add(answer.json()["group"])
            feedback = requests.post(f"{server.url}/feedback", json={
                "uid": f"s-{i}", "experiment": "signalled", "event_id": f"s-{i}"})
            assert feedback.status_code == 202, feedback.text  # an exposure was recorded
        assert groups == {"control", "variation"}
        results = requests.get(f"{server.url}/experiments/signalled/results",
                               headers=admin_headers).json()
        assert sum(v["exposures"] for v in results["variants"]) == 40, results


def test_a_relayed_change_reaches_another_host_and_the_listener_stops(tmp_path, redis_prefix):
    """Two hosts' signals relayed over the real Redis: a notify on one moves the other's,
    and stop() ends the listener's thread within its poll interval."""
    import threading
    import time

    from ml_api.experiments.change_signal import POLL_SECONDS, RelayedSignal
    from tests.conftest import REDIS_URL

    channel = f"{redis_prefix}changes"
    here = RelayedSignal(ChangeSignal(tmp_path / "here.changes"), REDIS_URL, channel)
    there = RelayedSignal(ChangeSignal(tmp_path / "there.changes"), REDIS_URL, channel)
    earlier = set(threading.enumerate())  # other tests' apps may run relays of their own
    there.start()
    deadline = time.monotonic() + 5
    while there.value() == 0 and time.monotonic() < deadline:  # subscribed: it reloads once
        time.sleep(0.01)
    before = there.value()
    here.notify()
    while there.value() == before and time.monotonic() < deadline:
        time.sleep(0.005)
    assert there.value() > before
    listeners = [t for t in set(threading.enumerate()) - earlier if t.name == "change-relay"]
    assert len(listeners) == 1
    there.stop()
    for thread in listeners:
        thread.join(timeout=POLL_SECONDS + 2)
    assert not any(t.is_alive() for t in listeners)
