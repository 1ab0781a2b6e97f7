"""The service as it is deployed: gunicorn with its config file, 2 workers, real backends."""
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests
from scipy import stats

from ml_api.wiring import build_services
from tests.helpers import FEATURES, ROOT, Gunicorn, JsonClient, settings_env

pytestmark = pytest.mark.slow

N_UIDS = 10_000


def ask_all(url, uids, threads=16):
    client = JsonClient(url)

    def ask(uid):
        status, body = client.post("/predict", {"uid": uid, "features": FEATURES})
        assert status == 200, body
        return uid, body["group"]

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(ask, uids))


def test_10k_uids_split_evenly_and_keep_their_group_across_a_full_restart(real_settings,
                                                                         tmp_path):
    uids = [f"consumer-{i}" for i in range(N_UIDS)]
    env = settings_env(real_settings)
    with Gunicorn(env, workers=2, log_path=tmp_path / "first.log") as server:
        first = ask_all(server.url, uids)
    control = sum(g == "control" for g in first.values())
    assert stats.binomtest(control, N_UIDS, 0.5).pvalue > 0.001

    with Gunicorn(env, workers=2, log_path=tmp_path / "second.log") as server:
        second = ask_all(server.url, uids)
    assert second == first


def test_embedded_default_through_gunicorn(embedded_settings, tmp_path):
    env = settings_env(embedded_settings)
    assert "REDIS_URL" not in env
    with Gunicorn(env, workers=2, log_path=tmp_path / "g.log") as server:
        first = ask_all(server.url, [f"e-{i}" for i in range(300)], threads=4)
        again = ask_all(server.url, [f"e-{i}" for i in range(300)], threads=4)
    assert first == again
    assert set(first.values()) == {"control", "variation"}


def test_body_limit_under_gunicorn_with_and_without_a_content_length(embedded_settings,
                                                                    tmp_path):
    """gunicorn marks wsgi.input as terminated: a body with a Content-Length is read by
    its length, a chunked one up to the limit + 1 byte. Past the limit both get the JSON
    413 and store nothing (werkzeug's reader cut a chunked body and answered 400)."""
    env = {**settings_env(embedded_settings), "MAX_BODY_BYTES": "4096"}
    small = json.dumps({"uid": "chunked-small", "features": FEATURES}).encode()
    huge = json.dumps({"uid": "too-big", "features": FEATURES, "pad": "x" * 10_000}).encode()
    headers = {"Content-Type": "application/json"}

    def chunked(data):  # a generator body: requests sends it chunked, with no length
        yield from (data[i:i + 1000] for i in range(0, len(data), 1000))

    with Gunicorn(env, workers=1, log_path=tmp_path / "g.log") as server, \
            requests.Session() as session:
        url = f"{server.url}/predict"
        answers = {
            "length, small": session.post(url, data=small.replace(b"chunked", b"length"),
                                          headers=headers, timeout=10),
            "length, huge": session.post(url, data=huge, headers=headers, timeout=10),
            "chunked, small": session.post(url, data=chunked(small), headers=headers,
                                           timeout=10),
            "chunked, huge": session.post(url, data=chunked(huge), headers=headers,
                                          timeout=10),
        }
        # The connection still serves after a refused body.
        after = session.post(url, json={"uid": "after", "features": FEATURES}, timeout=10)
    assert {name: r.status_code for name, r in answers.items()} == {
        "length, small": 200, "length, huge": 413, "chunked, small": 200, "chunked, huge": 413}
    for name in ("length, huge", "chunked, huge"):
        assert answers[name].headers["Content-Type"] == "application/json"
        assert answers[name].json()["error"] == "request_entity_too_large"
    assert after.status_code == 200
    services = build_services(embedded_settings)
    experiment = services.catalog.get("demo")
    assert sum(services.exposures.exposure_counts(experiment.id).values()) == 3


def test_a_stopping_worker_writes_out_its_last_requests_events_and_traffic(
        embedded_settings, tmp_path):
    """Stopped right after a few requests (fewer than a publishing batch, before the
    shipper's wake-up), a worker still writes their events, its metric window and its
    traffic counts (the supervisor, which would write those, is off here) before it exits."""
    log = tmp_path / "g.log"
    with Gunicorn(settings_env(embedded_settings), workers=1, log_path=log) as server, \
            requests.Session() as session:
        for i in range(5):
            response = session.post(f"{server.url}/predict",
                                    json={"uid": f"last-{i}", "features": FEATURES}, timeout=10)
            assert response.status_code == 200
    events = [json.loads(line) for line in log.read_text().splitlines()
              if line.startswith("{")]
    requests_logged = [e for e in events if e["event_type"] == "request"]
    assert len(requests_logged) == 5
    assert [e["requests"] for e in events
            if e["event_type"] == "metric" and e["endpoint"] == "/predict"] == [5]
    services = build_services(embedded_settings)
    experiment = services.catalog.get("demo")
    traffic = services.traffic.since(experiment.id, datetime(2000, 1, 1))
    assert sum(entry["requests"] for entry in traffic.values()) == 5


def test_tampered_model_stops_the_start_with_a_clear_message(embedded_settings, tmp_path):
    artifact = next(embedded_settings.models_dir.glob("gboost-*.joblib"))
    original = artifact.read_bytes()
    try:
        artifact.write_bytes(original + b"\0")
        check = subprocess.run([sys.executable, "-m", "ml_api", "check-models"],
                               env={**settings_env(embedded_settings), "PATH": ""},
                               capture_output=True, text=True, cwd=ROOT)
        assert check.returncode != 0 and "sha256" in check.stderr
        server = Gunicorn(settings_env(embedded_settings), log_path=tmp_path / "g.log")
        try:
            server.start(timeout=20)
            raise AssertionError("gunicorn started with a tampered model")
        except RuntimeError as exc:
            assert "exited" in str(exc)
        assert server.proc.returncode != 0
        assert "refusing to start" in (tmp_path / "g.log").read_text()
    finally:
        artifact.write_bytes(original)


def _one_request(port: int, uid: str) -> tuple[str, float]:
    """A /predict on a new connection: (outcome, seconds). Outcomes: ok, refused (nothing was
    accepted), reset (accepted, then dropped without an answer), timeout."""
    import http.client
    import socket
    import time

    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/predict", json.dumps({"uid": uid, "features": FEATURES}),
                           {"Content-Type": "application/json"})
        outcome = "ok" if connection.getresponse().status == 200 else "error status"
    except ConnectionRefusedError:
        outcome = "refused"
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        outcome = "reset"
    except socket.timeout:
        outcome = "timeout"
    finally:
        connection.close()
    return outcome, time.monotonic() - started


def test_after_a_graceful_stop_new_connections_are_refused_never_reset(embedded_settings,
                                                                       tmp_path):
    """Under load on new connections, SIGTERM to gunicorn: requests in flight are answered,
    later connections are refused at once (a balancer retries them elsewhere), none is
    accepted and then reset after a hang. Started again on the same port, it serves."""
    import signal
    import threading
    import time

    server = Gunicorn(settings_env(embedded_settings), log_path=tmp_path / "g.log").start()
    results: list[tuple[float, str, float]] = []
    stop_sent = threading.Event()
    done = threading.Event()

    def load(worker: int) -> None:
        for i in range(100_000):
            if done.is_set():
                return
            outcome, took = _one_request(server.port, f"stop-{worker}-{i}")
            results.append((time.monotonic(), outcome, took))
            if outcome == "refused":
                time.sleep(0.01)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(6)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        sigterm_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        stop_sent.set()
        server.proc.wait(timeout=30)
        time.sleep(0.5)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    outcomes = [outcome for _, outcome, _ in results]
    before = [outcome for at, outcome, _ in results if at < sigterm_at]
    assert before.count("ok") > 50 and set(before) == {"ok"}
    assert outcomes.count("refused") > 0
    assert {"reset", "timeout", "error status"}.isdisjoint(outcomes), \
        {o: outcomes.count(o) for o in set(outcomes)}
    assert max(took for _, outcome, took in results if outcome == "refused") < 0.5
    with server.start():
        assert _one_request(server.port, "after-restart")[0] == "ok"
