"""Two hosts (two gunicorn instances, each with its own spool and change signal) sharing the
real Redis and MariaDB."""
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import create_engine, text

from tests.conftest import ADMIN_TOKEN
from tests.helpers import FEATURES, Gunicorn, JsonClient, settings_env

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def two_hosts(settings, tmp_path, refresh_seconds: float):
    hosts = []
    for name in ("a", "b"):
        env = {**settings_env(settings), "SPOOL_PATH": str(tmp_path / name / "spool.sqlite3"),
               "EXPERIMENT_REFRESH_SECONDS": str(refresh_seconds)}
        hosts.append(Gunicorn(env, log_path=tmp_path / f"{name}.log"))
    return hosts


def test_a_status_change_on_one_host_is_served_by_the_other_within_100_ms(real_settings,
                                                                          tmp_path):
    """Polling alone would take up to a minute here (EXPERIMENT_REFRESH_SECONDS=60): the
    change travels over Redis pub/sub."""
    a, b = two_hosts(real_settings, tmp_path, refresh_seconds=60)
    with a, b, requests.Session() as session:
        session.post(f"{a.url}/experiments", headers=ADMIN, timeout=10, json={
            "name": "relayed", "variants": [{"name": "control", "model": "logreg@1"},
                                            {"name": "variation", "model": "gboost@1"}]})
        delays = []
        for round_ in range(5):
            body = {"uid": f"relay-{round_}", "experiment": "relayed", "features": FEATURES}
            assert not session.post(f"{b.url}/predict", json=body).json()["in_experiment"]
            response = session.post(f"{a.url}/experiments/relayed/start", headers=ADMIN)
            assert response.status_code == 200, response.text
            changed_at = time.monotonic()
            while not session.post(f"{b.url}/predict", json=body).json()["in_experiment"]:
                assert time.monotonic() - changed_at < 5, "the change never reached host b"
                time.sleep(0.002)
            delays.append(time.monotonic() - changed_at)
            assert session.post(f"{a.url}/experiments/relayed/pause",
                                headers=ADMIN).status_code == 200
            paused_at = time.monotonic()
            while session.post(f"{b.url}/predict", json=body).json()["in_experiment"]:
                assert time.monotonic() - paused_at < 5, "the pause never reached host b"
                time.sleep(0.002)
            delays.append(time.monotonic() - paused_at)
    print(f"change seen on the other host after: median {statistics.median(delays) * 1000:.1f}"
          f" ms, max {max(delays) * 1000:.1f} ms")
    assert max(delays) < 0.1, delays


def test_a_new_uid_racing_on_two_hosts_gets_one_group_and_one_exposure(real_settings,
                                                                       tmp_path):
    a, b = two_hosts(real_settings, tmp_path, refresh_seconds=2)
    uids = [f"race-{i}" for i in range(300)]
    with a, b:
        clients = [JsonClient(a.url), JsonClient(b.url)]

        def race(uid):
            barrier = threading.Barrier(2)

            def ask(client):
                barrier.wait()
                status, body = client.post("/predict", {"uid": uid, "features": FEATURES})
                assert status == 200, body
                return body["group"]

            with ThreadPoolExecutor(2) as pair:
                return list(pair.map(ask, clients))

        with ThreadPoolExecutor(4) as pool:
            answers = dict(zip(uids, pool.map(race, uids)))
    assert all(first == second for first, second in answers.values())
    engine = create_engine(real_settings.database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT uid, variant FROM exposures WHERE uid LIKE 'race-%'"))
        recorded = {}
        for uid, variant in rows:
            assert uid not in recorded, f"two exposures for {uid}"
            recorded[uid] = variant
    engine.dispose()
    assert recorded == {uid: groups[0] for uid, groups in answers.items()}
