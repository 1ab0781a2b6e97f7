"""New uids' first exposures written ahead to local files, then to MariaDB in batches."""
import fcntl
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from ml_api import create_app
from ml_api.records.ahead_log import AheadLog
from ml_api.records.new_exposures import NewExposure
from ml_api.validation import FeedbackRequest, PredictRequest
from ml_api.wiring import ASSIGNMENT_TTL_SECONDS
from tests.helpers import FEATURES, ROOT


def services_of(settings):
    return create_app(settings).extensions["ml_api"]


def predict(services, uid):
    return services.prediction.predict(PredictRequest(uid, FEATURES, None))


def redis_value(settings, redis_client, services, uid):
    experiment_id = services.catalog.get("demo").id
    return redis_client.get(f"{settings.redis_prefix}assign:{experiment_id}:{uid}")


def test_a_new_uid_is_answered_once_on_disk_and_reaches_the_database_in_a_batch(
        real_settings, redis_client):
    services = services_of(real_settings)
    services.write_ahead.stop()  # this test writes the batch itself
    groups = {uid: predict(services, uid).group for uid in (f"ahead-{i}" for i in range(60))}
    demo = services.catalog.get("demo")
    # Answered, durable in this process's files, marked provisional in Redis, not yet in SQL.
    assert services.write_ahead.pending() == 60
    assert redis_value(real_settings, redis_client, services, "ahead-0") == groups["ahead-0"] + "*"
    assert services.exposures.find_exposure(demo.id, "ahead-0") is None

    assert services.write_ahead.flush() == 60
    assert services.write_ahead.pending() == 0
    assert {uid: services.exposures.find_exposure(demo.id, uid) for uid in groups} == groups
    counted, expected = services.exposures.exposure_counters(demo.id)
    assert counted == services.exposures.exposure_counts(demo.id)
    assert sum(counted.values()) == 60 and abs(sum(expected.values()) - 60) < 1e-9
    # The database's groups replace the marks, written behind.
    deadline = time.monotonic() + 2
    while (redis_value(real_settings, redis_client, services, "ahead-59") != groups["ahead-59"]
           and time.monotonic() < deadline):
        time.sleep(0.01)
    assert all(redis_value(real_settings, redis_client, services, uid) == group
               for uid, group in groups.items())
    demo_keys = [f"{real_settings.redis_prefix}assign:{demo.id}:{uid}" for uid in groups]
    assert all(0 < redis_client.ttl(key) <= ASSIGNMENT_TTL_SECONDS for key in demo_keys)


def test_a_batch_counts_each_uid_once_with_some_recorded_before_and_one_twice(real_settings):
    services = services_of(real_settings)
    store, demo = services.exposures, services.catalog.get("demo")
    shares = {"control": 0.5, "variation": 0.5}
    assert store.record_exposure(demo.id, "earlier", "variation", shares) == ("variation", True)
    batch = [NewExposure(demo.id, "earlier", "control", shares),  # recorded before: kept
             NewExposure(demo.id, "twice", "control", shares, covariate=2.0),
             NewExposure(demo.id, "twice", "variation", shares),  # the first entry wins
             NewExposure(demo.id, "fresh", "variation", shares, covariate=3.0)]
    held = store.record_exposures(batch)
    assert held == {(demo.id, "earlier"): ("variation", False),
                    (demo.id, "twice"): ("control", True),
                    (demo.id, "fresh"): ("variation", True)}
    counted, expected = store.exposure_counters(demo.id)
    assert counted == store.exposure_counts(demo.id) == {"control": 1, "variation": 2}
    assert expected == {"control": 1.5, "variation": 1.5}
    sums = store.covariate_sums(demo.id, "conversion", store.metric_sums(demo.id, "conversion"),
                                conversion=True)
    assert (sums["control"].n, sums["control"].x, sums["control"].x2) == (1, 2.0, 4.0)
    # Every exposed uid counts; "earlier" came without a covariate and stays in as missing.
    assert (sums["variation"].n, sums["variation"].missing, sums["variation"].x) == (2, 1, 3.0)


def test_feedback_right_after_the_answer_finds_the_exposure_written_ahead(real_settings):
    services = services_of(real_settings)
    services.write_ahead.stop()
    group = predict(services, "quick-buyer").group
    name, receipt = services.outcomes.record(
        FeedbackRequest("quick-buyer", None, "conversion", 1.0, "order-1"))
    assert (receipt.variant, receipt.queued, receipt.duplicate) == (group, False, False)
    assert services.write_ahead.pending() == 0 and services.spool.pending() == 0


def test_feedback_at_another_worker_finds_the_exposure_this_one_wrote_ahead(real_settings):
    first, other = services_of(real_settings), services_of(real_settings)
    first.write_ahead.stop()
    group = predict(first, "hopper").group
    name, receipt = other.outcomes.record(
        FeedbackRequest("hopper", None, "conversion", 1.0, "order-2"))
    assert (receipt.variant, receipt.queued, receipt.duplicate) == (group, False, False)
    assert first.write_ahead.flush() == 1  # written twice: counted once
    demo = first.catalog.get("demo")
    assert first.exposures.exposure_counters(demo.id)[0][group] == 1


def test_another_worker_serves_a_uid_whose_batch_is_not_written_yet_the_same_group_once(
        real_settings, redis_client):
    first, other = services_of(real_settings), services_of(real_settings)
    first.write_ahead.stop()
    group = predict(first, "busy").group
    answer = predict(other, "busy")  # sees the provisional mark: insert-or-get settles it
    assert (answer.group, answer.first_exposure) == (group, False)
    first.write_ahead.flush()
    demo = first.catalog.get("demo")
    assert first.exposures.exposure_counts(demo.id) == {group: 1}
    assert first.exposures.exposure_counters(demo.id)[0][group] == 1


def test_what_a_worker_wrote_ahead_is_replayed_by_another_only_once_it_has_died(
        real_settings, tmp_path):
    services = services_of(real_settings)
    demo = services.catalog.get("demo")
    live = AheadLog(tmp_path / "ahead")
    live.append(NewExposure(demo.id, "alive", "control", demo.shares))
    replayer = AheadLog(tmp_path / "ahead")  # its own descriptors: it cannot lock live's file
    # A worker that writes one exposure ahead, then dies before its batch.
    dead = subprocess.run([sys.executable, "-c", (
        "import os; from ml_api.records.ahead_log import AheadLog;"
        "from ml_api.records.new_exposures import NewExposure;"
        f"AheadLog({str(tmp_path / 'ahead')!r}).append("
        f"NewExposure({demo.id}, 'orphan', 'variation', {demo.shares!r}, 1.5)); os._exit(9)")],
        cwd=ROOT)
    assert dead.returncode == 9
    assert len(list((tmp_path / "ahead").glob("*.jsonl"))) == 2
    assert replayer.replay(services.exposures) == 1
    assert services.exposures.find_exposure(demo.id, "orphan") == "variation"
    assert services.exposures.find_exposure(demo.id, "alive") is None  # its writer lives
    assert len(list((tmp_path / "ahead").glob("*.jsonl"))) == 1
    assert replayer.replay(services.exposures) == 0


def test_a_replay_removes_hidden_files_that_dead_processes_never_renamed(tmp_path):
    """A process killed between creating its next file and renaming it leaves an empty
    hidden file: a replay removes it once it is old and nobody holds it."""
    folder = tmp_path / "ahead"
    log = AheadLog(folder)
    stale, fresh, held = (folder / f".{name}" for name in ("stale", "fresh", "held"))
    for path in (stale, fresh, held):
        path.touch()
    an_hour_ago = time.time() - 3600
    for path in (stale, held):
        os.utime(path, (an_hour_ago, an_hour_ago))
    holder = os.open(held, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a live process between its open and its rename
    try:
        assert log.replay(store=None) == 0  # no visible files: nothing to write
        assert not stale.exists()
        assert fresh.exists() and held.exists()
    finally:
        os.close(holder)


def test_batches_racing_over_the_same_uids_record_each_once(real_settings):
    """Four writers, each with all 200 uids in its own order, in batches of 50: every uid is
    recorded once, by one of them, and the counters equal the rows."""
    services = services_of(real_settings)
    store, demo = services.exposures, services.catalog.get("demo")
    uids = [f"race-{i}" for i in range(200)]

    def write(seed):
        order = random.Random(seed).sample(uids, len(uids))
        recorded = []
        for start in range(0, len(order), 50):
            held = store.record_exposures([NewExposure(demo.id, uid, "control", demo.shares)
                                           for uid in order[start:start + 50]])
            recorded += [uid for (_, uid), (_, first) in held.items() if first]
        return recorded

    with ThreadPoolExecutor(4) as pool:
        recorded = [uid for batch in pool.map(write, range(4)) for uid in batch]
    assert sorted(recorded) == sorted(uids)
    counted, _ = store.exposure_counters(demo.id)
    assert store.exposure_counts(demo.id) == {"control": 200}
    assert counted == {"control": 200, "variation": 0}


def test_a_thread_moves_to_a_new_file_when_full_and_the_full_one_goes_once_written(
        tmp_path, monkeypatch):
    monkeypatch.setattr("ml_api.records.ahead_log.ROTATE_BYTES", 500)
    ahead = AheadLog(tmp_path / "ahead")
    exposures = [NewExposure(7, f"u-{i}", "control", {"control": 1.0}) for i in range(40)]
    for exposure in exposures[:25]:
        ahead.append(exposure)
    first = ahead.read()
    files = list((tmp_path / "ahead").glob("*.jsonl"))
    assert first.exposures == exposures[:25] and len(files) > 2
    ahead.done(first)
    assert len(list((tmp_path / "ahead").glob("*.jsonl"))) == 1  # the one still written to
    for exposure in exposures[25:]:
        ahead.append(exposure)
    second = ahead.read()
    assert second.exposures == exposures[25:]  # each exposure read once
    ahead.done(second)
    assert ahead.pending() == 0
    ahead.close()
    assert not list((tmp_path / "ahead").iterdir())


def first_seen(services, experiment_id, uid) -> float:
    """The exposure row's first_seen, as time.time() seconds."""
    from datetime import timezone

    from ml_api.records.statements import FIND_EXPOSURE
    with services.exposures.engine.connect() as conn:
        _, _, seen = conn.execute(FIND_EXPOSURE, {"p_experiment": experiment_id,
                                                  "p_uid": uid}).one()
    return seen.replace(tzinfo=timezone.utc).timestamp()


def test_first_seen_is_when_the_uid_was_claimed_not_when_its_batch_was_written(real_settings):
    services = services_of(real_settings)
    services.write_ahead.stop()  # this test writes the batch itself, a while later
    demo = services.catalog.get("demo")
    before = time.time()
    predict(services, "claimed-ahead")
    after = time.time()
    time.sleep(1.5)
    assert services.write_ahead.flush() == 1
    assert before - 1e-6 <= first_seen(services, demo.id, "claimed-ahead") <= after + 1e-6


def test_first_seen_of_a_spooled_exposure_is_when_it_was_spooled_not_replayed(real_settings):
    services = services_of(real_settings)
    demo = services.catalog.get("demo")
    before = time.time()
    services.spool.add_exposure(demo.id, "claimed-spooled", demo.variants[0].name, demo.shares)
    after = time.time()
    time.sleep(1.5)  # the outage
    assert services.spool.replay(services.exposures) == 1
    assert before - 1e-6 <= first_seen(services, demo.id, "claimed-spooled") <= after + 1e-6
