"""Stickiness on the real Redis and MariaDB: weight changes, cache flushes, races, outages."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from scipy import stats

from ml_api import create_app
from ml_api.validation import PredictRequest
from tests.helpers import FEATURES, Gunicorn, settings_env


def eventually(read, done, seconds: float = 2.0):
    """read() once done(value) holds, or its last value after `seconds` (cache fills are
    written behind the answer)."""
    deadline = time.monotonic() + seconds
    while not done(value := read()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def predict_groups(services, uids):
    return {uid: services.prediction.predict(PredictRequest(uid, FEATURES, None)).group
            for uid in uids}


def test_weight_change_keeps_assigned_uids_and_moves_only_new_ones(real_settings):
    services = create_app(real_settings).extensions["ml_api"]
    first_uids = [f"early-{i}" for i in range(1000)]
    before = predict_groups(services, first_uids)
    demo = services.catalog.get("demo")
    services.store.set_weights(demo.id, {"control": 90, "variation": 10})

    assert predict_groups(services, first_uids) == before
    late = predict_groups(services, [f"late-{i}" for i in range(3000)])
    control = sum(g == "control" for g in late.values())
    assert stats.binomtest(control, 3000, 0.9).pvalue > 0.001
    counts = services.exposures.exposure_counts(demo.id)
    assert sum(counts.values()) == 4000


def test_flushed_cache_loses_no_assignment(real_settings, redis_client):
    services = create_app(real_settings).extensions["ml_api"]
    uids = [f"flush-{i}" for i in range(500)]
    before = predict_groups(services, uids)
    demo = services.catalog.get("demo")
    # Change the weights too, so the hash alone would now give many uids another group.
    services.store.set_weights(demo.id, {"control": 1, "variation": 99})
    keys = eventually(lambda: list(redis_client.scan_iter(
        match=f"{real_settings.redis_prefix}*")), lambda found: len(found) == 500)
    assert len(keys) == 500
    redis_client.delete(*keys)

    restarted = create_app(real_settings).extensions["ml_api"]  # no memory of its own yet
    assert predict_groups(restarted, uids) == before
    # The cache was refilled with the durable answers (written behind the answer).
    key = f"{real_settings.redis_prefix}assign:{demo.id}:flush-0"
    assert eventually(lambda: redis_client.get(key), lambda v: v is not None) \
        == before["flush-0"]


def redis_calls(client, command):
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_returning_uid_costs_at_most_one_redis_round_trip(real_settings, redis_client):
    first_worker = create_app(real_settings).extensions["ml_api"]
    (group,) = predict_groups(first_worker, ["counted"]).values()
    first_worker.write_ahead.flush()  # its exposure in the database, its Redis value final
    key = f"{real_settings.redis_prefix}assign:{first_worker.catalog.get('demo').id}:counted"
    assert eventually(lambda: redis_client.get(key), lambda value: value == group) == group
    other_worker = create_app(real_settings).extensions["ml_api"]
    calls = redis_calls(redis_client, "get") + redis_calls(redis_client, "set")
    predict_groups(other_worker, ["counted"] * 20)
    # One command (SET NX, which finds the final value) for the first request this process
    # sees; later requests are served from memory. Nothing is written.
    assert redis_calls(redis_client, "get") + redis_calls(redis_client, "set") - calls == 1
    assert redis_client.get(key) == group


def test_redis_unreachable_falls_back_to_the_database(real_settings):
    services = create_app(real_settings).extensions["ml_api"]
    uids = [f"outage-{i}" for i in range(100)]
    before = predict_groups(services, uids)
    down = real_settings.with_overrides(redis_url="redis://127.0.0.1:1/0")
    services_without_redis = create_app(down).extensions["ml_api"]
    assert predict_groups(services_without_redis, uids) == before
    new = predict_groups(services_without_redis, ["outage-new"])
    # A uid first seen during the outage is recorded durably and keeps its group afterwards.
    assert predict_groups(services, ["outage-new"]) == new


def test_fifty_concurrent_requests_for_one_new_uid_get_one_group(real_settings, tmp_path):
    with Gunicorn(settings_env(real_settings), workers=2, log_path=tmp_path / "g.log") as server:
        barrier = threading.Barrier(50)

        def ask(_):
            session = requests.Session()
            session.get(f"{server.url}/health")  # connect first, then race on the request
            barrier.wait()
            return session.post(f"{server.url}/predict",
                                json={"uid": "racer", "features": FEATURES}, timeout=30)

        with ThreadPoolExecutor(50) as pool:
            responses = list(pool.map(ask, range(50)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["group"] for r in responses}) == 1
    services = create_app(real_settings).extensions["ml_api"]
    demo = services.catalog.get("demo")
    assert sum(services.exposures.exposure_counts(demo.id).values()) == 1


def test_database_outage_assigns_provisionally_and_confirms_later(real_settings, redis_client):
    from ml_api.assignment.caches import InProcessAssignmentCache, RedisAssignmentCache
    from ml_api.assignment.sticky import StickyAssigner
    from ml_api.records.engine import make_engine
    from ml_api.records.exposures import ExposureStore

    services = create_app(real_settings).extensions["ml_api"]
    demo = services.catalog.get("demo")
    redis_cache = RedisAssignmentCache(real_settings.redis_url, real_settings.redis_prefix,
                                       200, 3600)
    dead_store = ExposureStore(make_engine("mysql+pymysql://root@127.0.0.1:1/none"))
    during = StickyAssigner(InProcessAssignmentCache(), redis_cache, dead_store)
    group, first = during.assign(demo, "during-outage")
    assert first  # this call gave the uid its group, though only provisionally
    key = f"{real_settings.redis_prefix}assign:{demo.id}:during-outage"
    assert redis_client.get(key) == group + "*"  # provisional: not confirmed by the database

    # Weights change before the database returns: the provisional group still holds.
    other = "control" if group == "variation" else "variation"
    services.store.set_weights(demo.id, {group: 0, other: 100})
    demo = create_app(real_settings).extensions["ml_api"].catalog.get("demo")
    after = StickyAssigner(InProcessAssignmentCache(), redis_cache, services.exposures)
    assert after.assign(demo, "during-outage") == (group, False)
    assert services.exposures.find_exposure(demo.id, "during-outage") == group
    assert eventually(lambda: redis_client.get(key), lambda v: v == group) == group
