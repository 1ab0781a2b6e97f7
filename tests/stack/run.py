"""`make stack-test`: the container stack built from the project's Dockerfiles and run with
docker-compose on the local engine (tests/stack/engine.py), checked from the host through
nginx's published loopback port. One line per check, then a summary with counts.

    python -m tests.stack.run            # what make stack-test runs
    STACK_KEEP=1 python -m tests.stack.run   # keep the engine's images for the next run

Elasticsearch and Kibana are not started (their images cannot be had here); a TCP sink stands
in for Logstash and the checks read what it received.
"""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import requests

from load_test.processes import free_port
from tests.kibana_scenario import FEATURES, drive, mismatches, of_experiments
from tests.stack.engine import ROOT, Engine
from tests.stack.sink import sink_events_of

PROJECT = "mlapistack"
TOKEN = "dev-admin-token"          # the README's walkthrough token, so its blocks run as printed
README = (ROOT / "README.md").read_text()
STICKY_UIDS = [f"stack-{i}" for i in range(2000)]
REQUEST_FIELDS = {"@timestamp", "event_type", "endpoint", "status", "latency_ms", "request_id",
                  "experiment", "group", "model_name", "model_version", "uid_hash"}
FEEDBACK_FIELDS = {"metric", "value", "duplicate"}
METRIC_FIELDS = {"requests", "errors", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                 "window_seconds"}


class CheckFailed(AssertionError):
    pass


class Answer(NamedTuple):
    """A /predict answer as the checks see it."""

    status: int  # 0: no HTTP answer at all
    group: str | None  # answered 200 in the experiment: the uid's group
    error: str | None  # any other status: the JSON error code, None if the body was not JSON


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Stack:
    """docker-compose with the stack's two files, on the engine, for one project."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.api_port, self.locust_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.http = requests.Session()

    def env(self, token: str | None = TOKEN) -> dict[str, str]:
        env = {k: v for k, v in self.engine.env.items() if k != "ADMIN_TOKEN"}
        env.update(API_PORT=str(self.api_port), LOCUST_PORT=str(self.locust_port))
        if token:
            env["ADMIN_TOKEN"] = token
        return env

    def compose(self, *args: str, check: bool = True, timeout: float = 900,
                token: str | None = TOKEN) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["docker-compose", "-p", PROJECT, "-f", "docker-compose.yml",
             "-f", "docker-compose.local.yml", *args],
            cwd=ROOT, env=self.env(token), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise CheckFailed(f"docker-compose {' '.join(args)}: exit {result.returncode}\n"
                              f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return result

    def exec(self, service: str, *command: str, index: int = 1,
             check: bool = True) -> subprocess.CompletedProcess:
        return self.compose("exec", "-T", "--index", str(index), service, *command, check=check)

    def containers(self, service: str | None = None) -> list[dict]:
        """name, id, health and state of the project's containers (of one service)."""
        label = f"label=com.docker.compose.project={PROJECT}"
        out = self.engine.podman("ps", "-a", "--filter", label, "--format", "json").stdout
        found = []
        for c in json.loads(out or "[]"):
            labels = c.get("Labels") or {}
            if service and labels.get("com.docker.compose.service") != service:
                continue
            status = c.get("Status", "")
            health = next((h for h in ("healthy", "unhealthy", "starting") if h in status), "")
            found.append({"name": c["Names"][0], "id": c["Id"], "state": c["State"],
                          "health": health, "exit": c.get("ExitCode"),
                          "service": labels.get("com.docker.compose.service")})
        return found

    def wait_healthy(self, timeout: float = 300, service: str | None = None) -> None:
        """Every container (of `service`) running and healthy where it has a healthcheck,
        and `migrate` exited with 0."""
        deadline = time.monotonic() + timeout
        while True:
            containers = self.containers(service)
            waiting = [c["name"] for c in containers
                       if (c["service"] == "migrate" and c["state"] != "exited")
                       or (c["service"] != "migrate"
                           and (c["state"] != "running" or c["health"] in ("starting",
                                                                         "unhealthy")))]
            failed = [c["name"] for c in containers
                      if c["service"] == "migrate" and c["state"] == "exited" and c["exit"]]
            expect(not failed, f"{failed} exited with an error")
            if containers and not waiting:
                return
            expect(time.monotonic() < deadline, f"not healthy after {timeout:.0f} s: {waiting}")
            time.sleep(1)

    def predict(self, uid: str, experiment: str) -> Answer:
        try:
            r = self.http.post(f"{self.url}/predict", timeout=30, json={
                "uid": uid, "experiment": experiment, "features": FEATURES})
        except requests.RequestException:
            return Answer(0, None, None)
        try:
            body = r.json()
        except ValueError:  # not JSON: an HTML error page, say
            return Answer(r.status_code, None, None)
        if r.status_code != 200:
            return Answer(r.status_code, None, body.get("error"))
        return Answer(200, body["group"] if body["in_experiment"] else None, None)

    def groups(self, uids: list[str], experiment: str) -> dict[str, str | None]:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda u: self.predict(u, experiment), uids))
        statuses = [answer.status for answer in answers]
        expect(statuses.count(200) == len(uids), f"statuses: {sorted(set(statuses))}")
        return {uid: answer.group for uid, answer in zip(uids, answers)}

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        r = self.http.request(method, self.url + path, json=body, timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        expect(r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    def locust(self, *options: str, env: list[str]) -> subprocess.CompletedProcess:
        """A headless Locust run inside the locust container (docker-compose 1.29's `run`
        asks for container links, which podman does not have)."""
        settings = [part for item in env for part in ("-e", item)]
        return self.compose("exec", "-T", *settings, "locust", "locust", "-f",
                            "/load_test/locustfile.py", "--headless", "--only-summary",
                            *options, check=False, timeout=300)

    def sql(self, query: str) -> list[list[str]]:
        out = self.exec("mysql", "mariadb", "-uml_api", "-pml_api_dev_password", "ml_api",
                        "-N", "-e", query).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def predicts_served(self, index: int) -> float:
        """/predict requests counted by one api replica's Prometheus counter."""
        out = self.exec("api", "python", "-c", "import urllib.request; print(urllib.request."
                        "urlopen('http://127.0.0.1:5000/metrics').read().decode())",
                        index=index).stdout
        return sum(float(value) for value in re.findall(
            r'^ml_api_requests_total\{[^}]*endpoint="/predict"[^}]*\} (\S+)$', out, flags=re.M))


class Load:
    """Clients asking for known uids again and again until stopped, counting what goes wrong."""

    def __init__(self, stack: Stack, expected: dict[str, str | None], experiment: str):
        self.stack, self.expected, self.experiment = stack, expected, experiment
        self.sent = 0
        self.changed: list[str] = []
        self.failures: collections.Counter[tuple[int, str | None]] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(8)]

    def _run(self, offset: int) -> None:
        uids = list(self.expected)
        i = offset
        while not self._stop.is_set():
            uid = uids[i % len(uids)]
            answer = self.stack.predict(uid, self.experiment)
            with self._lock:
                self.sent += 1
                if answer.status != 200:
                    self.failures[answer.status, answer.error] += 1
                elif answer.group != self.expected[uid]:
                    self.changed.append(uid)
            i += len(self._threads)

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{status} {error or 'not JSON'}: {count}"
                          for (status, error), count in self.failures.most_common())
        return (f"{self.sent} requests, {self.failed} failed{f' ({kinds})' if kinds else ''}, "
                f"{len(self.changed)} group changes")


def readme_blocks(section: str) -> list[str]:
    start = README.index(f"## {section}")
    end = README.find("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", README[start:end], flags=re.S)


def run_bash(script: str, url: str) -> str:
    script = "set -euo pipefail\n" + script.replace("http://127.0.0.1:5000", url).replace(
        "curl -s ", "curl -sf ")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    expect(out.returncode == 0, f"exit {out.returncode}: {out.stderr[-1000:]}")
    return out.stdout


class Checks:
    """The checks, in the order they run; each returns a short detail for its line."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.groups: dict[str, str | None] = {}

    def images_build(self) -> str:
        started = time.monotonic()
        self.stack.compose("build", "--parallel", timeout=1800)
        images = self.stack.engine.podman("images", "--format", "{{.Repository}}").stdout
        for name in ("ml-api", "ml-api-locust", "ml-api-stack/mariadb", "ml-api-stack/nginx"):
            expect(name in images, f"no image {name}")
        return f"{time.monotonic() - started:.0f} s"

    def compose_works_without_the_token(self) -> str:
        for command in (["config", "-q"], ["ps"]):
            result = self.stack.compose(*command, token=None, check=False)
            expect(result.returncode == 0, f"{command}: {result.stderr[-500:]}")
        return "config and ps with ADMIN_TOKEN unset"

    def stack_comes_up_healthy(self) -> str:
        started = time.monotonic()
        self.stack.compose("up", "-d", "--scale", "api=2")
        self.stack.wait_healthy()
        running = sorted(c["name"] for c in self.stack.containers() if c["state"] == "running")
        expect(len(self.stack.containers("api")) == 2, "two api replicas")
        for service in ("elasticsearch", "kibana"):
            expect(not self.stack.containers(service), f"{service} must not run here")
        return f"{len(running)} containers healthy in {time.monotonic() - started:.0f} s"

    def the_image_alone_serves_the_embedded_default(self) -> str:
        port = free_port()
        name = f"{PROJECT}-alone"
        self.stack.engine.podman("run", "-d", "--name", name, "-e", "ADMIN_TOKEN=alone",
                                 "-p", f"127.0.0.1:{port}:5000", "ml-api:latest")
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    r = requests.post(f"http://127.0.0.1:{port}/predict", timeout=5, json={
                        "uid": "alice", "features": FEATURES})
                    break
                except requests.RequestException:
                    expect(time.monotonic() < deadline, "no answer within 60 s: " + self.stack
                           .engine.podman("logs", name, check=False).stderr[-1500:])
                    time.sleep(0.5)
            expect(r.status_code == 200 and r.json()["experiment"] == "demo", r.text)
        finally:
            self.stack.engine.podman("rm", "-f", "-v", name, check=False)
        return f"docker run alone: {r.json()['group']} via {r.json()['model']['name']}"

    def readme_quickstart_curl_through_nginx(self) -> str:
        block = next(b for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
                     if b.startswith("curl") and "/predict" in b)
        body = json.loads(run_bash(block, self.stack.url))
        expect(body["experiment"] == "demo" and body["group"] == "control"
               and body["model"] == {"name": "logreg", "version": "1"}, str(body))
        return f"group {body['group']}, prediction {body['prediction']}"

    def nginx_answers_its_own_errors_in_json(self) -> str:
        r = self.stack.http.post(f"{self.stack.url}/predict", data=b"x" * (2 << 20),
                                 timeout=30, headers={"Content-Type": "application/json"})
        expect(r.status_code == 413 and r.headers["Content-Type"] == "application/json",
               f"{r.status_code} {r.headers.get('Content-Type')}: {r.text[:200]}")
        expect(r.json()["error"] == "request_entity_too_large", r.text)
        return f"2 MiB body: {r.status_code} {r.json()['error']}"

    def readme_walkthrough_through_nginx(self) -> str:
        blocks = readme_blocks("Running an experiment")
        out = run_bash("\n".join(blocks), self.stack.url)
        documents = [json.loads(line) for line in re.findall(
            r"^\{.*\}$|^\[.*\]$", out.replace("}{", "}\n{"), flags=re.M)]
        actions = [e["action"] for e in documents[-1]["entries"]]
        expect(actions == ["create", "start", "update", "promote", "promote"], str(actions))
        results = next(d for d in documents if "decision" in d)
        expect(sum(v["converting_uids"] for v in results["variants"]) == 1, str(results))
        return "create, start, predict, feedback, ramp, results, promote x2, audit"

    def uids_reach_both_replicas_and_keep_their_group(self) -> str:
        self.stack.admin("POST", "/experiments", {
            "name": "stack-sticky", "variants": [
                {"name": "control", "model": "logreg@1", "weight": 50},
                {"name": "variation", "model": "gboost@1", "weight": 50}]})
        self.stack.admin("POST", "/experiments/stack-sticky/start")
        time.sleep(3)  # every worker reloads experiments within EXPERIMENT_REFRESH_SECONDS
        before = [self.stack.predicts_served(i) for i in (1, 2)]
        self.groups = self.stack.groups(STICKY_UIDS, "stack-sticky")
        expect(None not in self.groups.values(), "every uid is in the experiment")
        served = [self.stack.predicts_served(i) - b for i, b in zip((1, 2), before)]
        expect(min(served) > 0.2 * len(STICKY_UIDS), f"requests per replica: {served}")
        again = self.stack.groups(STICKY_UIDS, "stack-sticky")
        changed = sum(again[u] != g for u, g in self.groups.items())
        expect(changed == 0, f"{changed} uids changed group")
        split = sum(g == "variation" for g in self.groups.values())
        return (f"{len(STICKY_UIDS)} uids, replicas served {served[0]:.0f} / {served[1]:.0f}, "
                f"{split} in variation, 0 group changes")

    def rolling_restart_under_load_loses_nothing(self) -> str:
        """Each replica restarted in turn (SIGTERM, then started again) while clients keep
        asking through nginx: a stopping replica refuses new connections, nginx sends them
        to the other one, so no request fails and no uid changes group."""
        replicas = [c["name"] for c in self.stack.containers("api")]
        with Load(self.stack, self.groups, "stack-sticky") as load:
            time.sleep(2)
            for replica in replicas:
                self.stack.engine.podman("restart", replica, timeout=120)
                self.stack.wait_healthy(120)
                time.sleep(6)  # nginx has asked DNS again: both replicas take requests
        expect(load.sent > 500, load.summary())
        expect(not load.changed and not load.failed, load.summary())
        return f"{' then '.join(replicas)}: {load.summary()}"

    def force_recreate_of_the_api(self) -> str:
        old = {c["id"] for c in self.stack.containers("api")}
        with Load(self.stack, self.groups, "stack-sticky") as load:
            self.stack.compose("up", "-d", "--no-deps", "--force-recreate", "--scale", "api=2",
                               "api")
            self.stack.wait_healthy(180)
            time.sleep(6)  # nginx re-resolves `api` within its resolver's valid=5s
        expect(not old & {c["id"] for c in self.stack.containers("api")}, "not recreated")
        # Replaced all at once, the replicas do drop requests: each is told so, a JSON 503
        # (nginx's no_replica, or a starting replica's own), never an HTML page or a 5xx else.
        expect(all(status == 503 and error for status, error in load.failures), load.summary())
        again = self.stack.groups(STICKY_UIDS, "stack-sticky")
        changed = sum(again[u] != g for u, g in self.groups.items()) + len(load.changed)
        expect(changed == 0, f"{changed} group changes")
        return f"during: {load.summary()}; after: 0 of {len(STICKY_UIDS)} changed"

    def spool_survives_a_mysql_outage_and_an_api_recreate(self) -> str:
        experiments = self.stack.sql("SELECT COUNT(*) FROM experiments")[0][0]
        # Earlier checks' last exposures reach MySQL in a batch just after their answers.
        exposures = None
        while exposures != (now := self.stack.sql("SELECT COUNT(*) FROM exposures")[0][0]):
            exposures = now
            time.sleep(1)
        self.stack.compose("stop", "mysql")
        uids = [f"spooled-{uuid.uuid4().hex[:8]}" for _ in range(40)]
        answered = self.stack.groups(uids, "stack-sticky")
        for uid in uids[:20]:
            r = self.stack.http.post(f"{self.stack.url}/feedback", timeout=30, json={
                "uid": uid, "experiment": "stack-sticky", "metric": "conversion", "value": 1,
                "event_id": f"{uid}-order"})
            expect(r.status_code == 202, f"feedback while MySQL is down: {r.status_code} "
                                         f"{r.text[:200]}")
        # The replicas that spooled stop before MySQL returns, so only their recreated
        # successors, reading the spool from the api-var volume, can write it.
        self.stack.compose("stop", "api")
        self.stack.compose("start", "mysql")
        self.stack.wait_healthy(120, service="mysql")
        self.stack.compose("up", "-d", "--no-deps", "--force-recreate", "--scale", "api=2", "api")
        self.stack.wait_healthy(240)
        names = ",".join(f"'{u}'" for u in uids)
        deadline = time.monotonic() + 60
        while True:
            rows = self.stack.sql(f"SELECT uid, variant FROM exposures WHERE uid IN ({names})")
            outcomes = self.stack.sql(f"SELECT COUNT(*) FROM outcomes WHERE uid IN ({names})")
            if len(rows) == len(uids) and int(outcomes[0][0]) == 20:
                break
            expect(time.monotonic() < deadline,
                   f"after 60 s: {len(rows)} of {len(uids)} exposures, {outcomes[0][0]} of 20 "
                   "outcomes written")
            time.sleep(1)
        expect(dict(rows) == answered, "a recorded group differs from the answered one")
        expect(self.stack.sql("SELECT COUNT(*) FROM experiments")[0][0] == experiments,
               "experiments lost across MySQL's restart")
        expect(int(self.stack.sql("SELECT COUNT(*) FROM exposures")[0][0])
               == int(exposures) + len(uids), "exposures lost across MySQL's restart")
        return (f"{len(uids)} exposures and 20 outcomes spooled, replayed after the recreate; "
                f"{experiments} experiments and {exposures} exposures kept by MySQL")

    def ml_api_cli_in_the_image(self) -> str:
        listed = json.loads(self.stack.exec("api", "ml-api", "experiments", "list").stdout)
        names = {e["name"] for e in listed}
        expect({"demo", "checkout-model", "stack-sticky"} <= names, str(names))
        uid = self.stack.exec("api", "id", "-u").stdout.strip()
        expect(uid != "0", "runs as root")
        denied = self.stack.exec("api", "touch", "/app/models/x", check=False)
        expect(denied.returncode != 0, "/app/models is writable")
        return f"{len(names)} experiments listed as uid {uid}; /app/models read-only"

    def locust_headless_names_the_better_group(self) -> str:
        result = self.stack.locust("-u", "40", "-r", "20", "-t", "30s",
                                   env=["LOAD_RATES=control=0.05,variation=0.30",
                                        "LOAD_USERS=1500"])
        out = result.stdout + result.stderr
        expect(result.returncode == 0, f"exit {result.returncode}: {out[-2500:]}")
        totals = re.search(r"Aggregated\s+(\d+)\s+(\d+)\(", out)
        expect(totals is not None and int(totals.group(2)) == 0, out[-2500:])
        decision = re.search(r"decision: (\w+) (\w*)", out)
        expect(decision is not None and decision.groups() == ("winner", "variation"),
               f"decision: {decision and decision.group(0)}")
        return f"{totals.group(1)} requests, 0 failures, {decision.group(0)}"

    def locust_stops_when_its_setup_fails(self) -> str:
        started = time.monotonic()
        result = self.stack.locust("-u", "5", "-r", "5", "-t", "120s",
                                   env=["ADMIN_TOKEN=not-the-token"])
        out = result.stdout + result.stderr
        took = time.monotonic() - started
        expect(result.returncode != 0, "exit code 0 after a failed setup")
        expect("FAILED: setting up the run's experiment" in out and "401" in out, out[-1500:])
        expect(took < 100, f"took {took:.0f} s for a 120 s run")
        return f"exit {result.returncode} after {took:.0f} s, the 401 reported as a failure"

    def sink_events(self) -> list[dict]:
        """Every event the Logstash sink has received so far."""
        return sink_events_of(self.stack.exec("logstash", "cat", "/data/events.jsonl").stdout)

    def events_reach_the_logstash_sink(self) -> str:
        events = self.sink_events()
        requests_ = [e for e in events if e.get("event_type") == "request"]
        metrics = [e for e in events if e.get("event_type") == "metric"]
        endpoints = {e["endpoint"] for e in requests_}
        expect({"/predict", "/feedback"} <= endpoints, str(endpoints))
        predict = next(e for e in requests_ if e["endpoint"] == "/predict" and e["status"] == 200)
        feedback = next(e for e in requests_ if e["endpoint"] == "/feedback")
        expect(REQUEST_FIELDS <= set(predict), f"missing {REQUEST_FIELDS - set(predict)}")
        expect(FEEDBACK_FIELDS <= set(feedback), f"missing {FEEDBACK_FIELDS - set(feedback)}")
        expect(metrics and METRIC_FIELDS <= set(metrics[0]), "metric events")
        expect(not any("host" in e for e in events), "an event has a host field")
        actions = {e["action"] for e in events if e.get("event_type") == "action"}
        expect({"create", "start", "promote"} <= actions, f"action events: {actions}")
        return (f"{len(requests_)} request and {len(metrics)} metric events, fields as "
                f"documented; actions {', '.join(sorted(actions))}")

    def kibana_panels_mean_what_results_say(self) -> str:
        """The scripted experiments of tests/kibana_scenario.py through nginx: every saved
        Lens panel, evaluated over the events the sink received (tests/lens_eval.py), says
        what /results says. Exposures reach MySQL in batches and events the sink in
        batches: it is asked again until both have arrived, for up to 90 s."""
        def call(method, path, body, admin):
            headers = {"Authorization": f"Bearer {TOKEN}"} if admin else {}
            r = self.stack.http.request(method, self.stack.url + path, json=body,
                                        headers=headers, timeout=30)
            return r.status_code, r.json()

        run = drive(call, prefix=f"kibana-{uuid.uuid4().hex[:6]}-", settle_seconds=3)
        names = set(run["names"].values())
        deadline = time.monotonic() + 90
        while True:
            results = {role: self.stack.admin("GET", f"/experiments/{name}/results")
                       for role, name in run["names"].items()}
            events = of_experiments(self.sink_events(), names)
            failed = mismatches({**run, "events": events, "results": results})
            if not failed:
                break
            expect(time.monotonic() < deadline, "after 90 s: " + "; ".join(failed)[:3000])
            time.sleep(3)
        return (f"{len(events)} events of {', '.join(sorted(names))}: exposures, rates, means, "
                "guardrail, late window, annotations and splits agree with /results")

    def memory_of_the_stack(self) -> str:
        out = self.stack.engine.podman("stats", "--no-stream", "--format", "json").stdout
        used = {}
        for row in json.loads(out or "[]"):
            amount = row.get("mem_usage", row.get("MemUsage", "0B")).split("/")[0].strip()
            number, unit = re.match(r"([\d.]+)\s*([kMG]?i?B)", amount).groups()
            scale = {"B": 1, "kB": 1e3, "KiB": 1024, "MB": 1e6, "MiB": 2**20, "GB": 1e9,
                     "GiB": 2**30}[unit]
            used[row.get("name", row.get("Name"))] = float(number) * scale / 2**20
        expect(used, "podman stats returned nothing")
        parts = ", ".join(f"{n.removeprefix(PROJECT + '_')} {m:.0f}" for n, m in
                          sorted(used.items()))
        return f"{sum(used.values()):.0f} MiB in all ({parts})"

    def down_leaves_nothing(self) -> str:
        self.stack.compose("down", "-v", "--remove-orphans", token=None)
        left = self.stack.containers()
        volumes = self.stack.engine.podman("volume", "ls", "-q").stdout.split()
        expect(not left, f"containers left: {[c['name'] for c in left]}")
        expect(not [v for v in volumes if v.startswith(PROJECT)], f"volumes left: {volumes}")
        return "no container, no volume"


ORDER = ["images_build", "compose_works_without_the_token", "stack_comes_up_healthy",
         "the_image_alone_serves_the_embedded_default", "readme_quickstart_curl_through_nginx",
         "nginx_answers_its_own_errors_in_json", "readme_walkthrough_through_nginx",
         "uids_reach_both_replicas_and_keep_their_group",
         "rolling_restart_under_load_loses_nothing", "force_recreate_of_the_api",
         "spool_survives_a_mysql_outage_and_an_api_recreate", "ml_api_cli_in_the_image",
         "locust_headless_names_the_better_group", "locust_stops_when_its_setup_fails",
         "events_reach_the_logstash_sink", "kibana_panels_mean_what_results_say",
         "memory_of_the_stack", "down_leaves_nothing"]
# Without these, nothing after them can mean anything.
GATES = {"images_build", "stack_comes_up_healthy"}


def main() -> int:
    started = time.monotonic()
    state = Path(os.environ.get("STACK_STATE_DIR", ROOT / ".stack"))
    keep = os.environ.get("STACK_KEEP") == "1"
    engine = Engine(state)
    passed = failed = 0
    try:
        engine.start()
        engine.base_images()
        print(f"stack-test: base images ready after {time.monotonic() - started:.0f} s",
              flush=True)
        checks = Checks(Stack(engine))
        for position, name in enumerate(ORDER):
            check_started = time.monotonic()
            try:
                detail = getattr(checks, name)()
                passed += 1
                print(f"PASS  {name.replace('_', ' ')} ({time.monotonic() - check_started:.0f} s)"
                      f": {detail}", flush=True)
            except Exception as exc:  # noqa: BLE001 - every failure is reported, then counted
                failed += 1
                reason = str(exc) if isinstance(exc, CheckFailed) else traceback.format_exc()
                print(f"FAIL  {name.replace('_', ' ')}: {reason}", flush=True)
                if name in GATES:
                    skipped = ORDER[position + 1:]
                    failed += len(skipped)
                    print(f"FAIL  not run after {name}: {', '.join(skipped)}", flush=True)
                    break
    finally:
        if failed:
            logs = Stack(engine).compose("logs", "--tail", "40", check=False, token=None)
            print(logs.stdout[-6000:], file=sys.stderr)
        Stack(engine).compose("down", "-v", "--remove-orphans", check=False, token=None)
        engine.stop(keep_images=keep)
    print(f"stack-test: {passed} passed, {failed} failed in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
