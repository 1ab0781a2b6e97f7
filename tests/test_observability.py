"""Request events reach real TCP/UDP listeners from gunicorn with 2 workers; a dead or stalled
Logstash never fails or blocks a request; /metrics adds up both workers."""
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from load_test.inprocess import call
from load_test.processes import free_port
from ml_api import create_app
from ml_api.http import observability
from ml_api.telemetry import prometheus
from tests.helpers import FEATURES, Gunicorn, settings_env
from tests.listeners import StalledListener, TcpJsonLinesListener, UdpJsonListener

REQUEST_FIELDS = {"@timestamp": str, "event_type": str, "service": str, "endpoint": str,
                  "status": int, "latency_ms": float, "request_id": str, "experiment": str,
                  "group": str, "model_name": str, "model_version": str, "uid_hash": str,
                  "model_latency_ms": float}


def drive(url, n, threads=8, feedback_every=0):
    def one(i):
        session = requests.Session()
        uid = f"obs-{i}"
        started = time.perf_counter()
        status = session.post(f"{url}/predict", json={"uid": uid, "features": FEATURES},
                              timeout=30).status_code
        elapsed = time.perf_counter() - started
        if feedback_every and i % feedback_every == 0:
            session.post(f"{url}/feedback", json={"uid": uid}, timeout=30)
        return status, elapsed

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_events_reach_a_real_listener_with_the_documented_fields(real_settings, tmp_path,
                                                                 protocol):
    listener = TcpJsonLinesListener() if protocol == "tcp" else UdpJsonListener()
    env = {**settings_env(real_settings), "LOGSTASH_HOST": "127.0.0.1",
           "LOGSTASH_PORT": str(listener.port), "LOGSTASH_PROTOCOL": protocol}
    try:
        with Gunicorn(env, workers=2, log_path=tmp_path / "g.log") as server:
            outcomes = drive(server.url, 60, feedback_every=3)
            events = listener.wait_for(60 + 20)
            # an invalid request is logged with its error code
            requests.post(f"{server.url}/predict", json={"uid": "x", "features": [1]})
            events = listener.wait_for(60 + 20 + 1)
    finally:
        listener.close()
    assert {status for status, _ in outcomes} == {200}
    predictions = [e for e in events if e["endpoint"] == "/predict" and e["status"] == 200]
    assert len(predictions) == 60
    for event in predictions:
        for field, kind in REQUEST_FIELDS.items():
            assert isinstance(event[field], kind), (field, event)
        assert "uid" not in event and "host" not in event  # hashed uid; no ECS clash
    assert {e["group"] for e in predictions} == {"control", "variation"}
    feedback = [e for e in events if e["endpoint"] == "/feedback"]
    assert len(feedback) == 20 and all(e["status"] == 202 and e["group"] for e in feedback)
    errors = [e for e in events if e.get("error_code")]
    assert errors and errors[0]["status"] == 422 and errors[0]["error_code"] == "invalid_features"
    assert errors[0]["experiment"] == "demo" and errors[0]["group"] is None  # not assigned
    # a served request's event names what is known: no field is null (feedback gave no
    # experiment name); only an error says "no group yet" with a null
    assert all(None not in event.values() for event in events if not event.get("error_code"))
    assert all(event["first_exposure"] for event in predictions)  # 60 new consumers


@pytest.mark.parametrize("failure", ["unreachable", "stalled"])
def test_a_dead_or_stalled_logstash_never_fails_or_blocks_a_request(real_settings, tmp_path,
                                                                    failure):
    healthy = TcpJsonLinesListener()
    stalled = StalledListener()
    port = free_port() if failure == "unreachable" else stalled.port  # nobody listens there
    base = settings_env(real_settings)
    try:
        with Gunicorn({**base, "LOGSTASH_HOST": "127.0.0.1", "LOGSTASH_PORT": str(healthy.port),
                       "LOG_QUEUE_MAX": "50"}, log_path=tmp_path / "ok.log") as server:
            baseline = drive(server.url, 400)
        with Gunicorn({**base, "LOGSTASH_HOST": "127.0.0.1", "LOGSTASH_PORT": str(port),
                       "LOG_QUEUE_MAX": "50"}, log_path=tmp_path / "bad.log") as server:
            degraded = drive(server.url, 400)
            metrics = requests.get(f"{server.url}/metrics").text
    finally:
        healthy.close()
        stalled.close()
    assert {status for status, _ in degraded} == {200}
    base_median = statistics.median(t for _, t in baseline)
    bad_median = statistics.median(t for _, t in degraded)
    print(f"\n{failure}: median latency {bad_median * 1000:.2f} ms vs "
          f"{base_median * 1000:.2f} ms with a healthy listener")
    # Bounded check, not a timing benchmark: sending blocks for up to the 2 s socket timeout,
    # so any request that waited on Logstash would take seconds.
    assert max(t for _, t in degraded) < 1.0
    dropped = [s.value for f in text_string_to_metric_families(metrics)
               if f.name == "ml_api_log_events_dropped" for s in f.samples
               if s.name.endswith("_total")]
    if failure == "unreachable":  # 400 events into 50-event queues that cannot drain
        assert sum(dropped) > 0


def test_metrics_add_up_across_two_workers(real_settings, tmp_path):
    with Gunicorn(settings_env(real_settings), workers=2, log_path=tmp_path / "g.log") as server:
        outcomes = drive(server.url, 150, threads=8)
        for _ in range(7):
            requests.post(f"{server.url}/predict", json={"uid": "bad"})  # 400
        # Each worker publishes its requests' metrics within one wake-up of its shipper
        # thread (50 ms); give the worker that does not answer /metrics a moment.
        time.sleep(0.5)
        text = requests.get(f"{server.url}/metrics").text
        pids = set(server.worker_pids())
    assert len(pids) == 2
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests_total = {tuple(sorted(s.labels.items())): s.value
                      for s in families["ml_api_requests"].samples
                      if s.name == "ml_api_requests_total"}
    ok = sum(v for labels, v in requests_total.items()
             if dict(labels)["endpoint"] == "/predict" and dict(labels)["status"] == "200")
    bad = sum(v for labels, v in requests_total.items() if dict(labels)["status"] == "400")
    assert ok == len(outcomes) == 150 and bad == 7
    per_group = {dict(labels)["group"] for labels in requests_total if dict(labels)["group"]}
    assert per_group == {"control", "variation"}
    latency_count = sum(s.value for s in families["ml_api_request_latency_seconds"].samples
                        if s.name == "ml_api_request_latency_seconds_count")
    assert latency_count == 157
    cache = {(s.labels["tier"], s.labels["result"]): s.value
             for s in families["ml_api_assignment_cache"].samples
             if s.name == "ml_api_assignment_cache_total"}
    assert cache[("memory", "miss")] == 150  # 150 new uids, each seen once
    assert cache[("redis", "miss")] == 150


def test_observe_many_counts_as_observe_does_each_value():
    from prometheus_client import CollectorRegistry, Histogram

    from ml_api.telemetry.prometheus import observe_many

    registry = CollectorRegistry()
    buckets = (0.001, 0.0025, 0.005, 0.01, 0.1, 1)
    one = Histogram("one", "observe()", buckets=buckets, registry=registry)
    many = Histogram("many", "observe_many()", buckets=buckets, registry=registry)
    values = [0.0, 0.0005, 0.001, 0.0010001, 0.0025, 0.004, 0.01, 0.05, 0.1, 0.99, 1.0, 3.0,
              250.0, 0.001, 0.001]
    for value in values:
        one.observe(value)
    observe_many(many, values[:7])
    observe_many(many, values[7:])
    samples = {name: [(s.name.split("_", 1)[1], s.labels.get("le"), s.value)
                      for s in family.samples if not s.name.endswith("_created")]
               for family in registry.collect() for name in [family.name]}
    sums = {name: [v for kind, _, v in rows if kind == "sum"] for name, rows in samples.items()}
    assert sums["many"] == pytest.approx(sums["one"], rel=1e-12)  # added in another order
    rows = {name: [row for row in rows if row[0] != "sum"] for name, rows in samples.items()}
    assert rows["many"] == rows["one"]
    assert rows["one"][0] == ("bucket", "0.001", 5)  # 0, 0.0005 and three times 0.001


def predict_requests_counted() -> float:
    text = prometheus.render()[0].decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "ml_api_requests_total"
               and sample.labels["endpoint"] == "/predict")


def test_request_threads_publish_events_and_only_a_waiting_drain_updates_prometheus(
        embedded_settings):
    """The request that brings the pending records to PUBLISH_BATCH queues their events once
    its response is closed; Prometheus is updated by the shipper's wake-up or /metrics
    (drain() with wait), once for everything published since."""
    app = create_app(embedded_settings)
    shipper = app.extensions["ml_api"].request_events.shipper
    shipper.wake_seconds = 1e9  # no wake-up during the test: only the requests publish
    before = predict_requests_counted()
    for i in range(observability.PUBLISH_BATCH):
        call(app, f"batch-{i}")  # closes each response as a server does
    assert len(shipper._queue) == observability.PUBLISH_BATCH  # the events, queued
    assert predict_requests_counted() == before  # Prometheus not touched yet
    app.wsgi_app.drain()  # what the wake-up and /metrics do
    assert predict_requests_counted() == before + observability.PUBLISH_BATCH
    app.wsgi_app.drain()  # counted once, not again
    assert predict_requests_counted() == before + observability.PUBLISH_BATCH


def test_error_events_carry_the_experiment_and_the_group_where_it_was_known(
        models_dir, mysql_url, tmp_path, monkeypatch):
    """A model failure after the assignment names the group and model; a database outage
    that leaves a uid's group unknown names the experiment with a null group; a consumer's
    first exposure is marked, so rates can be computed from the events alone."""
    from ml_api.settings import Settings
    from ml_api.wiring import init_database
    from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER
    from tests.listeners import TcpProxy

    proxy = TcpProxy(MYSQL_PORT, MYSQL_HOST)
    database = mysql_url.rsplit("/", 1)[1]
    settings = Settings(
        database_url=f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}@127.0.0.1:{proxy.port}/"
                     f"{database}", models_dir=models_dir, admin_token="t",
        spool_path=tmp_path / "spool.sqlite3", supervisor_interval_seconds=0)
    init_database(settings)
    app = create_app(settings)
    services = app.extensions["ml_api"]
    sent = []

    class Collect:  # stands where the Logstash transport would
        def send(self, lines, use_logging=False):
            sent.extend(json.loads(line) for line in lines)

    services.request_events.shipper.transport = Collect()
    client = app.test_client()
    try:
        def predict(features):
            return client.post("/predict", json={"uid": "known", "features": features})

        answer = predict(FEATURES).json
        assert predict(FEATURES).status_code == 200
        assert predict([1]).status_code == 422
        model = services.registry.get(f"{answer['model']['name']}@{answer['model']['version']}")

        def broken(row):
            raise RuntimeError("a bug in the model")

        monkeypatch.setattr(model, "predict", broken)
        assert predict(FEATURES).status_code == 500
        proxy.cut()
        assert client.post("/feedback", json={"uid": "stranger"}).status_code == 503
    finally:
        proxy.close()
    assert services.request_events.shipper.flush()
    events = [e for e in sent if e["event_type"] == "request"]
    first, again, invalid, model_failed, outage = events
    assert first["first_exposure"] is True and again["first_exposure"] is False
    assert first["group"] == again["group"] == answer["group"]
    assert invalid["error_code"] == "invalid_features"
    assert invalid["experiment"] == "demo" and "group" in invalid and invalid["group"] is None
    assert model_failed["error_code"] == "model_error" and model_failed["status"] == 500
    assert model_failed["group"] == answer["group"]
    assert (model_failed["model_name"], model_failed["model_version"]) == (
        answer["model"]["name"], answer["model"]["version"])
    assert outage["status"] == 503 and outage["endpoint"] == "/feedback"
    assert outage["experiment"] == "demo" and "group" in outage and outage["group"] is None


def test_application_logs_are_json_lines_and_reach_logstash_with_their_level(
        embedded_settings):
    """The supervisor's INFO lines (auto-stop, canary rollback) were dropped; now every
    ml_api log record is a JSON line, shipped beside the request events, and mapped."""
    import logging

    from ml_api.telemetry.logs import JsonFormatter, ShippedLogHandler
    from tests.test_elk_files import mapped, template_for

    listener = TcpJsonLinesListener()
    try:
        settings = embedded_settings.with_overrides(logstash_host="127.0.0.1",
                                                    logstash_port=listener.port)
        create_app(settings)
        logger = logging.getLogger("ml_api.experiments.supervisor")
        logger.info("supervisor: %s: %s", "demo", "stopped: max_duration_hours (1) reached")
        try:
            raise ValueError("a broken tick")
        except ValueError:
            logger.exception("supervisor tick failed")
        deadline = time.monotonic() + 20

        def supervisors():  # other threads of this test process may log too
            return [e for e in listener.events if e["event_type"] == "log"
                    and e["logger"] == "ml_api.experiments.supervisor"]
        while len(supervisors()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        logged = supervisors()
    finally:
        listener.close()
        root = logging.getLogger("ml_api")
        for handler in [h for h in root.handlers if isinstance(h, ShippedLogHandler)]:
            root.removeHandler(handler)
    stopped, failed = logged
    assert stopped["level"] == "INFO" and stopped["logger"] == "ml_api.experiments.supervisor"
    assert stopped["message"] == "supervisor: demo: stopped: max_duration_hours (1) reached"
    assert failed["level"] == "ERROR" and "ValueError: a broken tick" in failed["message"]
    for event in logged:
        assert set(event) <= mapped(template_for("ml-api-requests-x"))
    record = logging.LogRecord("ml_api.x", logging.WARNING, __file__, 1, "50%% of %s", ("it",),
                               None)
    line = json.loads(JsonFormatter().format(record))
    assert (line["event_type"], line["level"], line["message"]) == ("log", "WARNING", "50% of it")
