"""Faults on real components: a Redis restarted or stalled, MariaDB unreachable for a while,
workers killed or stopped mid-load. Nothing fails that should not, nobody changes group, and
every exposure and outcome accepted is in the database afterwards."""
import os
import signal
import subprocess
import threading
import time

import pymysql
import pytest
import redis
import requests

from load_test.processes import free_port
from ml_api import create_app
from ml_api.assignment.caches import RedisAssignmentCache
from ml_api.records.ahead_log import AheadLog
from ml_api.records.spool import Spool
from ml_api.settings import Settings
from ml_api.wiring import init_database
from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER, require_tool
from tests.helpers import FEATURES, Gunicorn, settings_env
from tests.listeners import StalledListener, TcpProxy

pytestmark = pytest.mark.slow


class Load:
    """Requests in a background thread until stopped; remembers every answer."""

    def __init__(self, url: str, uids: list[str], feedback: bool = False):
        self.url, self.uids, self.feedback = url, uids, feedback
        self.answers: list[tuple[str, int, str | None]] = []
        self.answered_at: list[float] = []  # time.monotonic() of each answer, in order
        self.accepted_feedback: set[str] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(4)]

    def _run(self, offset: int) -> None:
        session = requests.Session()
        i = offset
        while not self._stop.is_set():
            uid = self.uids[i % len(self.uids)]
            i += 4
            try:
                r = session.post(f"{self.url}/predict", timeout=10,
                                 json={"uid": uid, "features": FEATURES})
                group = r.json().get("group") if r.status_code == 200 else None
                self.answers.append((uid, r.status_code, group))
                self.answered_at.append(time.monotonic())
                if self.feedback and r.status_code == 200 and uid not in self.accepted_feedback:
                    f = session.post(f"{self.url}/feedback", timeout=10,
                                     json={"uid": uid, "event_id": f"{uid}-buy"})
                    if f.status_code == 202:
                        self.accepted_feedback.add(uid)
            except requests.RequestException as exc:
                self.answers.append((uid, 0, repr(exc)))
                self.answered_at.append(time.monotonic())

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def groups(self) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for uid, status, group in self.answers:
            if status == 200:
                seen.setdefault(uid, set()).add(group)
        return seen


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own, so that it can be stopped without harming others."""
    server = require_tool("redis-server", "redis-server")
    port = free_port()
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(tmp_path)]
    procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL)]

    def up():
        for _ in range(50):
            try:
                return redis.Redis(port=port).ping()
            except redis.RedisError:
                time.sleep(0.1)

    def restart(down_seconds: float):
        procs[-1].terminate()
        procs[-1].wait()
        time.sleep(down_seconds)
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        up()

    up()
    yield port, restart
    procs[-1].terminate()
    procs[-1].wait()


def test_redis_restart_mid_load_keeps_answering_and_nobody_moves(real_settings, own_redis,
                                                                 tmp_path):
    port, restart = own_redis
    env = {**settings_env(real_settings), "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    uids = [f"rr-{i}" for i in range(300)]
    with Gunicorn(env, log_path=tmp_path / "g.log") as server:
        with Load(server.url, uids) as load:
            time.sleep(2)
            restart(down_seconds=3)
            time.sleep(3)
        # After the restart Redis is used again: new uids' assignments are in it.
        for i in range(20):
            requests.post(f"{server.url}/predict", json={"uid": f"after-{i}",
                                                         "features": FEATURES})
        keys = redis.Redis(port=port).keys(f"{real_settings.redis_prefix}*")
    statuses = {status for _, status, _ in load.answers}
    assert statuses == {200}, statuses
    assert all(len(groups) == 1 for groups in load.groups().values())
    assert keys  # reconnected by itself
    services = create_app(real_settings).extensions["ml_api"]
    demo = services.catalog.get("demo")
    assert sum(services.exposures.exposure_counts(demo.id).values()) == len(load.groups()) + 20


def test_a_cache_connection_closed_by_a_redis_restart_is_replaced_at_once(own_redis):
    port, restart = own_redis
    cache = RedisAssignmentCache(f"redis://127.0.0.1:{port}/0", "restart:", 200, 60)
    assert cache.claim(1, "uid", "a*") == ("a*", True)
    restart(down_seconds=0.2)
    # This thread's connection of before is closed; the command goes again on a new one. The
    # restarted Redis kept nothing.
    assert cache.claim(1, "uid", "b*") == ("b*", True)
    assert cache.get(1, "uid") == "b*"


def test_a_stalled_redis_costs_at_most_its_timeout(real_settings, tmp_path):
    stalled = StalledListener()
    env = {**settings_env(real_settings), "REDIS_URL": f"redis://127.0.0.1:{stalled.port}/0",
           "REDIS_TIMEOUT_MS": "50"}
    try:
        with Gunicorn(env, log_path=tmp_path / "g.log").start(wait_for="/health") as server:
            session = requests.Session()
            timings = []
            for i in range(40):
                started = time.perf_counter()
                r = session.post(f"{server.url}/predict",
                                 json={"uid": f"st-{i % 20}", "features": FEATURES})
                timings.append(time.perf_counter() - started)
                assert r.status_code == 200
    finally:
        stalled.close()
    # Each request makes at most two Redis calls (GET, then SET NX for a new uid), each cut
    # off after 50 ms: far from a hang.
    assert max(timings) < 0.5, max(timings)


def test_mariadb_outage_mid_load_loses_no_exposure_or_outcome(models_dir, mysql_url,
                                                              redis_prefix, tmp_path):
    database = mysql_url.rsplit("/", 1)[1]
    proxy = TcpProxy(MYSQL_PORT, MYSQL_HOST)
    url = f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{proxy.port}/{database}"
    settings = Settings(database_url=url, redis_url="redis://127.0.0.1:6379/0",
                        redis_prefix=redis_prefix, models_dir=models_dir, admin_token="t",
                        spool_path=tmp_path / "spool.sqlite3", experiment_refresh_seconds=1)
    init_database(settings)
    env = {**settings_env(settings), "SUPERVISOR_INTERVAL_SECONDS": "1"}
    uids = [f"db-{i}" for i in range(400)]
    try:
        with Gunicorn(env, log_path=tmp_path / "g.log") as server:
            with Load(server.url, uids, feedback=True) as load:
                time.sleep(2)
                proxy.cut()
                time.sleep(2)
                degraded = requests.get(f"{server.url}/ready")
                time.sleep(8)
                proxy.restore()
                time.sleep(3)
            for _ in range(60):  # the supervisors replay the spool
                if requests.get(f"{server.url}/ready").status_code == 200:
                    break
                time.sleep(0.5)
            ready = requests.get(f"{server.url}/ready")
    finally:
        proxy.close()
    assert degraded.status_code == 503 and degraded.json()["error"] == "degraded"
    assert ready.status_code == 200, ready.text
    assert {status for _, status, _ in load.answers} == {200}
    assert all(len(groups) == 1 for groups in load.groups().values())
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD, database=database)
    with conn.cursor() as cur:
        cur.execute("SELECT uid, variant FROM exposures")
        exposures = dict(cur.fetchall())
        cur.execute("SELECT uid FROM outcomes")
        outcomes = [row[0] for row in cur.fetchall()]
    conn.close()
    answered = load.groups()
    assert set(exposures) == set(answered)  # every uid answered is recorded, once
    assert all(exposures[uid] in answered[uid] for uid in answered)
    assert sorted(outcomes) == sorted(load.accepted_feedback)  # every 202 is stored, once


def test_sigkill_of_a_worker_leaves_no_half_written_records(real_settings, tmp_path):
    uids = [f"k-{i}" for i in range(500)]
    with Gunicorn(settings_env(real_settings), log_path=tmp_path / "g.log") as server:
        with Load(server.url, uids, feedback=True) as load:
            time.sleep(2)
            os.kill(server.worker_pids()[0], signal.SIGKILL)
            time.sleep(3)
        assert len(server.worker_pids()) == 2  # gunicorn replaced it
    services = create_app(real_settings).extensions["ml_api"]
    demo = services.catalog.get("demo")
    exposures, sums = services.exposures.recount(demo.id, "conversion")
    counters, _ = services.exposures.exposure_counters(demo.id)
    assert {k: v for k, v in counters.items() if v} == exposures  # counters == raw rows
    assert services.exposures.metric_sums(demo.id, "conversion") == sums
    ok = sum(1 for _, status, _ in load.answers if status == 200)
    assert ok > 100
    assert all(len(groups) == 1 for groups in load.groups().values())


def test_every_exposure_answered_before_a_workers_sigkill_is_recorded(any_settings, tmp_path):
    """New uids only, a worker killed mid-load: each uid answered 200 has its exposure row,
    with the group it was answered, on MariaDB and on the embedded SQLite alike. With Redis,
    new uids' exposures are written ahead to local files: those the killed worker had not yet
    written reach the database through a surviving worker's replay, with no help from here."""
    uids = [f"fresh-{i}" for i in range(200_000)]  # none repeats within the run
    settings = any_settings.with_overrides(supervisor_interval_seconds=1)
    with Gunicorn(settings_env(settings), log_path=tmp_path / "g.log") as server:
        with Load(server.url, uids) as load:
            time.sleep(2)
            dead = server.worker_pids()[0]
            os.kill(dead, signal.SIGKILL)
            time.sleep(2)
        # A replay deletes the dead worker's files once their exposures are in the database.
        spool, ahead = Spool(settings.spool_path), AheadLog.beside(settings.spool_path)
        deadline = time.monotonic() + 15
        while ((spool.pending() or list(ahead.folder.glob(f"{dead}-*")))
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert spool.pending() == 0 and not list(ahead.folder.glob(f"{dead}-*"))
    answered = load.groups()
    assert len(answered) > 100
    services = create_app(any_settings).extensions["ml_api"]
    experiment_id = services.catalog.get("demo").id
    recorded = {uid: services.exposures.find_exposure(experiment_id, uid) for uid in answered}
    assert {uid: {group} for uid, group in recorded.items()} == answered


def test_sigterm_lets_in_flight_requests_finish(real_settings, tmp_path):
    uids = [f"t-{i}" for i in range(200)]
    server = Gunicorn(settings_env(real_settings), log_path=tmp_path / "g.log").start()
    with Load(server.url, uids) as load:
        time.sleep(1.5)
        stopped_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=40)
        time.sleep(0.5)
    assert server.proc.returncode == 0
    answers = list(zip(load.answers, load.answered_at))
    # Requests answered before the stop are complete responses.
    before = [a for a, at in answers if at < stopped_at]
    assert before and all(a[1] == 200 and a[2] in ("control", "variation") for a in before)
    # Afterwards a request gets its whole response or none: the connection is refused, or a
    # keep-alive connection is closed before the request on it was read (HTTP/1.1 allows
    # that; the client may send it again, as /predict is safe to repeat). Never a response
    # cut half-way.
    after = [a for a, at in answers if at >= stopped_at]
    # ("Connection aborted." is urllib3's word for a connection lost before any response
    # byte; "Connection broken", for one lost in the middle of a response.)
    cut = [a for a in after if a[1] == 0 and not any(
        none in a[2] for none in ("Connection aborted.", "NewConnectionError",
                                  "ConnectionRefusedError"))]
    assert not cut, cut[:3]
    assert all(a[2] in ("control", "variation") for a in after if a[1] == 200)


def test_a_double_outage_after_a_ramp_never_answers_another_group_than_the_stored_one(
        models_dir, mysql_url, own_redis, tmp_path):
    """Weights ramped from 90/10 to 10/90, then Redis restarted (its keys gone), MariaDB
    unreachable, and workers that remember nobody: a returning uid cannot be confirmed, and
    the hash under the new weights would move many. Each is served outside the experiment
    (the control, nothing recorded) instead of in a group it never had."""
    from ml_api.assignment.hashing import assign

    redis_port, restart_redis = own_redis
    database = mysql_url.rsplit("/", 1)[1]
    proxy = TcpProxy(MYSQL_PORT, MYSQL_HOST)
    url = f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{proxy.port}/{database}"
    settings = Settings(database_url=url, redis_url=f"redis://127.0.0.1:{redis_port}/0",
                        redis_prefix="double:", models_dir=models_dir, admin_token="t",
                        spool_path=tmp_path / "spool.sqlite3", experiment_refresh_seconds=1)
    init_database(settings)
    admin = {"Authorization": "Bearer t"}
    uids = [f"ramped-{i}" for i in range(150)]
    newcomers = [f"newcomer-{i}" for i in range(30)]
    try:
        with Gunicorn(settings_env(settings), log_path=tmp_path / "g.log") as server, \
                requests.Session() as session:
            def ask(uid):
                r = session.post(f"{server.url}/predict", timeout=10, json={
                    "uid": uid, "experiment": "ramped", "features": FEATURES})
                assert r.status_code == 200, r.text
                return r.json()["in_experiment"], r.json()["group"]

            session.post(f"{server.url}/experiments", headers=admin, json={
                "name": "ramped", "variants": [
                    {"name": "control", "model": "logreg@1", "weight": 90},
                    {"name": "variation", "model": "gboost@1", "weight": 10}]})
            session.post(f"{server.url}/experiments/ramped/start", headers=admin)
            stored = {uid: ask(uid)[1] for uid in uids}
            assert session.patch(f"{server.url}/experiments/ramped", headers=admin, json={
                "weights": {"control": 10, "variation": 90}}).status_code == 200
            server.stop()
            server.start()  # workers that remember nobody
            restart_redis(0.2)
            proxy.cut()
            during = {uid: ask(uid) for uid in uids + newcomers}
            proxy.restore()
    finally:
        proxy.close()
    would_move = [u for u in uids if ["control", "variation"][assign("ramped", u, [10, 90])]
                  != stored[u]]
    assert len(would_move) > 50  # the hash alone would have moved these
    in_experiment = {u: group for u, (inside, group) in during.items() if inside}
    assert all(in_experiment[u] == stored[u] for u in in_experiment if u in stored)
    assert {group for inside, group in during.values() if not inside} <= {"control"}
    assert not any(inside for inside, _ in during.values())
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD, database=database)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM exposures WHERE uid LIKE 'newcomer-%'")
        assert cur.fetchone()[0] == 0  # nothing recorded for those served outside
    conn.close()


def test_a_write_on_connections_the_server_dropped_succeeds_on_a_new_one(real_settings,
                                                                         mysql_url):
    """The pool does not ping before each checkout: when MariaDB drops every connection (as
    a restart does), the next write fails on its stale connection and is run once more on a
    new one, unseen by the caller."""
    services = create_app(real_settings).extensions["ml_api"]
    demo = services.catalog.get("demo")
    assert services.exposures.record_exposure(demo.id, "before-drop", "control") == (
        "control", True)
    database = mysql_url.rsplit("/", 1)[1]
    admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                            password=MYSQL_PASSWORD)
    with admin.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (database,))
        pooled = [row[0] for row in cur.fetchall()]
        for connection_id in pooled:
            cur.execute(f"KILL CONNECTION {int(connection_id)}")
    admin.close()
    assert pooled
    assert services.exposures.record_exposure(demo.id, "after-drop", "variation") == (
        "variation", True)
    assert services.exposures.find_exposure(demo.id, "after-drop") == "variation"
