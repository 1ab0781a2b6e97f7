"""Two hosts (two gunicorn instances, each with its own spool and change signal) sharing the
real Redis and MariaDB."""
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import ADMIN_TOKEN
from tests.helpers import FEATURES, Gunicorn, JsonClient, settings_env

pytestmark = pytest.mark.slow

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


def test_an_outcome_waits_for_its_exposure_in_another_hosts_spool_and_none_is_dropped(
        models_dir, mysql_url, redis_prefix, tmp_path, monkeypatch, capsys):
    """MariaDB unreachable. Host a answers a new uid (its exposure spooled on a), host b
    takes that uid's purchase (spooled on b); a third host answers another uid and loses its
    spool with its disk, and b takes that uid's purchase too. Back up, b replays first: both
    outcomes wait. Once a has replayed, the first is written; the orphan, past the horizon,
    goes to the dead letters, which `reconcile` lists. Nothing is deleted silently."""
    from ml_api.cli import main
    from ml_api.records import spool as spool_module
    from ml_api.records.engine import make_engine
    from ml_api.records.exposures import ExposureStore
    from ml_api.settings import Settings
    from ml_api.validation import FeedbackRequest, PredictRequest
    from ml_api.wiring import build_services, init_database
    from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER, REDIS_URL
    from tests.listeners import TcpProxy

    monkeypatch.setattr(spool_module, "RETRY_SECONDS", 0.1)
    proxy = TcpProxy(MYSQL_PORT, MYSQL_HOST)
    database = mysql_url.rsplit("/", 1)[1]
    url = f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{proxy.port}/{database}"
    base = Settings(database_url=url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
                    models_dir=models_dir, admin_token=ADMIN_TOKEN, experiment_refresh_seconds=0,
                    supervisor_interval_seconds=0, spool_orphan_horizon_seconds=2)
    init_database(base)
    a, b, lost = (build_services(base.with_overrides(spool_path=tmp_path / n / "spool.sqlite3"))
                  for n in ("a", "b", "lost"))

    def purchase(uid):
        return FeedbackRequest(uid, None, "conversion", 1.0, f"{uid}-order")
    try:
        proxy.cut()
        group = a.prediction.predict(PredictRequest("traveller", FEATURES, None)).group
        lost.prediction.predict(PredictRequest("orphan", FEATURES, None))
        for uid in ("traveller", "orphan"):
            assert b.outcomes.record(purchase(uid))[1].queued
        for host in (a, lost):  # their spools are replayed below, in this test's order
            host.write_ahead.stop()
        proxy.restore()
        b.spool.replay(b.exposures)
        assert b.spool.pending() == 2  # neither exposure is in the database yet: both wait
        assert a.write_ahead.flush() == 1  # host a writes what it wrote ahead
        time.sleep(0.2)
        assert b.spool.replay(b.exposures) == 1 and b.spool.pending() == 1
        time.sleep(2)
        assert b.spool.replay(b.exposures) == 1 and b.spool.pending() == 0
    finally:
        proxy.close()
    direct = ExposureStore(make_engine(mysql_url))
    demo = b.catalog.get("demo")
    assert direct.find_exposure(demo.id, "traveller") == group
    assert direct.metric_sums(demo.id, "conversion")[group].users == 1
    direct.engine.dispose()
    monkeypatch.setenv("DATABASE_URL", mysql_url)
    monkeypatch.setenv("MODELS_DIR", str(models_dir))
    monkeypatch.setenv("SPOOL_PATH", str(tmp_path / "cli" / "spool.sqlite3"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["reconcile", "demo"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(d["uid"], d["kind"]) for d in report["dead_letters"]] == [("orphan", "outcome")]
    assert report["dead_letters"][0]["payload"]["event_id"] == "orphan-order"
