"""Locust load test: a population of consumers calling /predict and, when they convert,
/feedback, with conversion rates that depend on the group that served them (a known true
effect), so every run is also an experiment whose answer is known.

    locust -f load_test/locustfile.py --host http://127.0.0.1:5000            # web UI :8089
    locust -f load_test/locustfile.py --host http://127.0.0.1:5000 --headless -u 200 -r 50 -t 60s

Settings (environment):
  LOAD_USERS         distinct returning consumers (default 5000)
  LOAD_NEW_SHARE     share of requests from never-seen consumers (default 0.05)
  LOAD_RATES         true conversion rate per group (default "control=0.10,variation=0.15")
  LOAD_WAIT_SECONDS  how long to wait for the API's /health at the start (default 60)
  LOAD_EXPERIMENT    experiment to drive (default: a fresh one per run when ADMIN_TOKEN is set,
                     else "demo")
  ADMIN_TOKEN        lets the run create its experiment and read its results at the end
A returning consumer answered with another group than before counts as a failure. With
ADMIN_TOKEN, the run fails (exit code 1) unless the results name the group with the higher
true rate once it has decided.
"""
from __future__ import annotations

import csv
import itertools
import json
import os
import random
import time
import urllib.request
from pathlib import Path

import gevent.event
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser

FEATURES = [[float(v) for v in row] for row in
            list(csv.reader((Path(__file__).with_name("features.csv")).open()))[1:]]
POOL = int(os.environ.get("LOAD_USERS", "5000"))
NEW_SHARE = float(os.environ.get("LOAD_NEW_SHARE", "0.05"))
RATES = {name: float(rate) for name, rate in (
    pair.split("=") for pair in os.environ.get("LOAD_RATES",
                                               "control=0.10,variation=0.15").split(","))}
RUN = f"lt{int(time.time())}"
ADMIN_TOKEN = os.environ.get("ADMIN_TOKEN", "")
EXPERIMENT = {"name": os.environ.get("LOAD_EXPERIMENT", "")}
SEEN: dict[str, str] = {}        # uid -> group first answered (this process)
ASKED: set[str] = set()          # uids sent to /predict (answered or not when the run ended)
CONVERTED: set[str] = set()      # uids whose conversion was sent
ACCEPTED: set[str] = set()       # ... and answered with 202
NEW_IDS = itertools.count()
READY = gevent.event.Event()     # users wait until the run's experiment is running everywhere
SETUP_FAILED: list[str] = []     # why the run's experiment could not be set up
UNHEALTHY: list[str] = []        # the API's last answer to /health while the setup waits


def admin_headers() -> dict:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}


def wait_until_healthy(host: str, seconds: float) -> None:
    """The API may still be starting (a fresh stack): poll /health before the first request."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"{host}/health", timeout=2).read()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise
            UNHEALTHY[:] = [str(exc)]
            time.sleep(0.5)


@events.test_start.add_listener
def create_experiment(environment, **_):
    """With an admin token and no LOAD_EXPERIMENT: a fresh 50/50 experiment for this run.
    If that fails (API not ready, wrong token), the run stops with the reason as a failure:
    otherwise every user would wait for the experiment forever and show nothing."""
    try:
        wait_until_healthy(environment.host, float(os.environ.get("LOAD_WAIT_SECONDS", "60")))
        start_experiment(environment.host)
    except Exception as exc:  # noqa: BLE001 - any failure here must stop the run visibly
        SETUP_FAILED.append(f"{type(exc).__name__}: {exc}")
        print(f"FAILED: setting up the run's experiment: {SETUP_FAILED[0]}", flush=True)
        environment.events.request.fire(
            request_type="SETUP", name="create the run's experiment", response_time=0,
            response_length=0, exception=exc, context={})
        environment.process_exit_code = 1
        runner = environment.runner
        if runner is not None:
            headless = getattr(environment.parsed_options, "headless", True)
            gevent.spawn_later(0.1, runner.quit if headless else runner.stop)
    finally:
        READY.set()


def start_experiment(host: str) -> None:
    if EXPERIMENT["name"] or not ADMIN_TOKEN:
        EXPERIMENT["name"] = EXPERIMENT["name"] or "demo"
        return
    name = f"load-{RUN}"
    body = {"name": name, "mde": 0.02, "variants": [
        {"name": "control", "model": "logreg@1", "weight": 50},
        {"name": "variation", "model": "gboost@1", "weight": 50}]}
    for path, data in (("/experiments", body), (f"/experiments/{name}/start", {})):
        request = urllib.request.Request(host + path, method="POST",
                                         data=json.dumps(data).encode(), headers=admin_headers())
        urllib.request.urlopen(request, timeout=10).read()
    EXPERIMENT["name"] = name
    # Every API worker reloads experiment definitions within EXPERIMENT_REFRESH_SECONDS (2 s by
    # default); until then a worker may still see the draft and serve the control to all.
    time.sleep(float(os.environ.get("LOAD_SETTLE_SECONDS", "3")))


@events.test_stop.add_listener
def check_results(environment, **_):
    """Print the run's experiment results; fail the run if they name the wrong group."""
    if not ADMIN_TOKEN or SETUP_FAILED:
        return
    if not EXPERIMENT["name"]:  # the run's time was up while its setup still waited
        print("FAILED: the run ended before its experiment was set up; the API's /health "
              f"last said: {UNHEALTHY[0] if UNHEALTHY else 'nothing yet'}", flush=True)
        environment.process_exit_code = 1
        return
    request = urllib.request.Request(
        f"{environment.host}/experiments/{EXPERIMENT['name']}/results", headers=admin_headers())
    results = json.loads(urllib.request.urlopen(request, timeout=30).read())
    decision = results["decision"]
    summary = {v["name"]: (v["exposures"], v["converting_uids"]) for v in results["variants"]}
    print(f"experiment {EXPERIMENT['name']}: {summary}; decision: {decision['outcome']} "
          f"{decision.get('winner') or ''} ({decision['message']})")
    best = max(RATES, key=RATES.get)
    total = environment.stats.total
    report = os.environ.get("LOAD_REPORT")
    if report:  # what this run sent, for comparing with what the database recorded
        # A request in flight when the run stops may or may not have reached the server, so
        # what the database holds must lie between what was answered and what was sent.
        Path(report).write_text(json.dumps({
            "experiment": EXPERIMENT["name"], "uids_answered": len(SEEN),
            "uids_sent": len(ASKED), "conversions_accepted": len(ACCEPTED),
            "conversions_sent": len(CONVERTED), "true_best": best, "results": results,
            "locust": {"requests": total.num_requests, "failures": total.num_failures,
                       "requests_per_s": round(total.total_rps, 1),
                       "p50_ms": total.get_response_time_percentile(0.50),
                       "p99_ms": total.get_response_time_percentile(0.99)}}))
    if decision["outcome"] == "winner" and decision["winner"] != best:
        print(f"FAILED: the results name {decision['winner']}, the true best is {best}")
        environment.process_exit_code = 1
    if decision["outcome"] == "sample_ratio_mismatch":
        environment.process_exit_code = 1


class Consumer(FastHttpUser):
    wait_time = between(0, 0.05)

    def on_start(self) -> None:
        READY.wait()
        if SETUP_FAILED:
            raise StopUser()

    def pick_uid(self) -> str:
        if random.random() < NEW_SHARE:
            return f"{RUN}-new-{os.getpid()}-{next(NEW_IDS)}"
        return f"{RUN}-user-{random.randrange(POOL)}"

    @task
    def visit(self) -> None:
        uid = self.pick_uid()
        body = {"uid": uid, "experiment": EXPERIMENT["name"],
                "features": random.choice(FEATURES)}
        ASKED.add(uid)
        with self.client.post("/predict", json=body, name="/predict",
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
                return
            answer = response.json()
            group = answer["group"]
            if not answer["in_experiment"]:
                return  # not running (yet) on that worker: everyone gets the serving variant
            first = SEEN.setdefault(uid, group)
            if first != group:
                response.failure(f"uid {uid} moved from {first} to {group}")
                return
        # Each consumer converts at most once, with its group's true rate (a fixed coin per uid).
        if uid not in CONVERTED and random.Random(uid).random() < RATES.get(group, 0.0):
            CONVERTED.add(uid)
            with self.client.post("/feedback", name="/feedback", catch_response=True, json={
                    "uid": uid, "experiment": EXPERIMENT["name"], "metric": "conversion",
                    "value": 1, "event_id": f"{uid}-conversion"}) as response:
                if response.status_code != 202:
                    response.failure(f"status {response.status_code}: {response.text[:200]}")
                else:
                    ACCEPTED.add(uid)
