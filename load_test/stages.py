"""Where a /predict request's time goes: each part of the full path timed inside real requests,
next to the whole request through the full app and the bare endpoint.

    python -m load_test.stages [--rounds 5] [--calls 20000] [--out bench-results]

One thread, in this process, no HTTP server: the full app is called as a WSGI app (as
`load_test.inprocess` does) for returning uids, on the real Redis and MariaDB (a private
database and key prefix, removed afterwards), its events encoded and then discarded. Timers
wrap the project's own functions in place (the view, the body reader, the validation, the
catalog, the assigner, each model, the health recorder, the response, the middleware and
its publishing), so each part is timed with the caches as a request leaves them, not hot in
a loop of its own (the prediction service alone costs about 10 µs in a loop and 20 µs inside
requests). What a part's timer does not cover is its parent's own lines; Flask and werkzeug
are the Flask app's time less the view's; the harness (what a server does: the environ, the
body stream, reading and closing the response) is the request's wall time less the
middleware's and the publishing's. Background threads (the event shipper's wake-ups:
Prometheus and sending; the catalog's reload; the supervisor) are the process's CPU time
less this thread's, on top. A timer costs time of its own (about a microsecond; 13 a
request), most of it in the row of its caller: each round also times the whole request
without timers, and the difference, per timed call, is taken out of the callers' rows (the
rows as timed are in the summary too), so the rows add up to the untimed request. Each
figure is the median over rounds. Gunicorn's share is not here: `make bench` reports the
workers' CPU per request under load, and `python -m load_test.instructions --server` counts
gunicorn's instructions. Also timed, in loops of their own: what less frequent requests add
(a Redis GET, a new uid's exposure, an outcome: wall time and the CPU of the calling thread)
and each model alone.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from load_test.inprocess import FEATURES, Nowhere, call
from load_test.processes import ROOT

USERS = 2000

ROWS = {  # the parts of a request, in the order of the table
    "framework": "Flask and werkzeug: request and response objects, routing, contexts",
    "body": "reading the body: content type, wsgi.input, orjson",
    "validate": "validating the request: uid, features",
    "experiment": "experiment lookup (the worker's catalog)",
    "features": "feature row, checked against the model's features",
    "assignment": "sticky assignment (a returning uid: the worker's memory tier)",
    "model": "model: the group's, fast path (50/50 logistic regression, gradient boosting)",
    "health": "variant health record (latency histogram)",
    "service": "prediction service's own lines: request id, result, timing",
    "response": "response: result to JSON (orjson) and a Response",
    "view": "view's own lines: the event's fields, timing",
    "observer": "observability in the request: middleware timer and record",
    "publishing": "observability: publishing events, every 16th request (per request)",
    "harness": "harness: environ, body stream, iterating and closing the response",
}
BACKGROUND = "background threads: shipper (Prometheus, sending), catalog reload, supervisor"
# The row whose time includes a timer's own cost: the one its caller's time goes to.
CALLER = {"view": "framework", "flask": "observer", "middleware": "harness",
          "publishing": "harness", **dict.fromkeys(("body", "validate", "prediction",
                                                    "response"), "view"),
          **dict.fromkeys(("experiment", "features", "assignment", "model", "health"),
                          "service")}


class Timers:
    """Wall time (ns) per name, for functions wrapped in place; restore() unwraps them all."""

    def __init__(self):
        self.ns: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self._undo: list = []

    def wrap(self, name: str, fn):
        ns, calls, clock = self.ns, self.calls, time.perf_counter_ns

        def timed(*args, **kwargs):
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                ns[name] += clock() - started
                calls[name] += 1
        return timed

    def patch(self, owner, attribute: str, name: str) -> None:
        """Time owner.attribute (a module's, a class's or an object's) under `name`."""
        own = vars(owner).get(attribute)  # None: a method the object gets from its class
        setattr(owner, attribute, self.wrap(name, getattr(owner, attribute)))
        self._undo.append((owner, attribute, own))

    def patch_item(self, mapping: dict, key: str, name: str) -> None:
        """Time mapping[key] (a view in Flask's view_functions) under `name`."""
        self._undo.append((mapping, key, mapping[key]))
        mapping[key] = self.wrap(name, mapping[key])

    def restore(self) -> None:
        for owner, attribute, own in reversed(self._undo):
            if isinstance(owner, dict):
                owner[attribute] = own
            elif own is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, own)
        self._undo.clear()


def instrument(app, services) -> Timers:
    """Timers around the parts of the full app's /predict path."""
    from ml_api import prediction, routes
    from ml_api.prediction import PredictionResult
    from ml_api.training import CONTROL_KEY, VARIATION_KEY

    timers = Timers()
    observer = app.wsgi_app  # the observability middleware around Flask
    timers.patch(observer, "_app", "flask")  # Flask's wsgi_app, the view included
    timers.patch(observer, "_drain_if_free", "publishing")
    timers.patch(app, "wsgi_app", "middleware")
    timers.patch_item(app.view_functions, "api.predict", "view")
    for module, attribute, name in (
            (routes, "read_json_body", "body"), (routes, "parse_predict_request", "validate"),
            (routes, "json_response", "response"), (prediction, "feature_row", "features")):
        timers.patch(module, attribute, name)
    timers.patch(PredictionResult, "to_dict", "response")
    timers.patch(services.prediction, "predict", "prediction")
    timers.patch(services.catalog, "get", "experiment")
    timers.patch(services.assigner, "assign", "assignment")
    timers.patch(services.health, "record", "health")
    for key in (CONTROL_KEY, VARIATION_KEY):
        timers.patch(services.registry.get(key), "predict", "model")
    return timers


def attribute(ns: dict[str, int], requests: int, wall_ns: int) -> dict[str, float]:
    """Per request µs of each row: children taken out of their parents."""
    us = {name: value / requests / 1000 for name, value in ns.items()}
    get = lambda name: us.get(name, 0.0)  # noqa: E731
    rows = {key: get(key) for key in ("body", "validate", "experiment", "features",
                                      "assignment", "model", "health", "response",
                                      "publishing")}
    rows["framework"] = get("flask") - get("view")
    rows["service"] = get("prediction") - sum(get(p) for p in ("experiment", "features",
                                                               "assignment", "model", "health"))
    rows["view"] = get("view") - sum(get(p) for p in ("body", "validate", "prediction",
                                                      "response"))
    rows["observer"] = get("middleware") - get("flask")
    rows["harness"] = wall_ns / requests / 1000 - get("middleware") - get("publishing")
    return rows


def without_timers(rows: dict[str, float], calls: dict[str, float], cost_us: float):
    """The rows less the timers' own cost, taken from the row each timer's caller is in."""
    rows = dict(rows)
    for timer, per_request in calls.items():
        rows[CALLER[timer]] -= cost_us * per_request
    return rows


def measure(settings, rounds: int, calls: int) -> dict:
    from load_test.bare_app import create_bare_app
    from ml_api import create_app
    from ml_api.training import CONTROL_KEY, VARIATION_KEY

    full = create_app(settings)
    services = full.extensions["ml_api"]
    services.request_events.shipper.transport = Nowhere()
    with environment(MODELS_DIR=str(settings.models_dir)):  # the bare app reads its settings
        bare = create_bare_app()
    uids = [f"stage-{i}" for i in range(USERS)]
    for uid in uids:  # every uid assigned (database, Redis) and known to this process
        call(full, uid)
    next_uid = itertools.cycle(uids).__next__

    def whole_us(app) -> float:
        return per_call_us(lambda: call(app, next_uid()), calls)

    # Each round: the full app and the bare endpoint as they are, then the full app timed.
    plain: dict[str, list[float]] = {"full": [], "bare": []}
    runs = []
    for _ in range(rounds):
        plain["full"].append(whole_us(full))
        plain["bare"].append(whole_us(bare))
        untimed = plain["full"][-1]
        timers = instrument(full, services)
        cpu, mine = time.process_time_ns(), time.thread_time_ns()
        wall = time.perf_counter_ns()
        for _ in range(calls):
            call(full, next_uid())
        wall = time.perf_counter_ns() - wall
        background = (time.process_time_ns() - cpu) - (time.thread_time_ns() - mine)
        timers.restore()
        per_request = {name: count / calls for name, count in timers.calls.items()}
        cost = (wall / calls / 1000 - untimed) / sum(per_request.values())
        rows = attribute(timers.ns, calls, wall)
        runs.append({"with_timers": rows, "rows": without_timers(rows, per_request, cost),
                     "wall": wall / calls / 1000, "background": background / calls / 1000,
                     "timed_calls": sum(per_request.values()), "cost": cost})

    def middle(pick) -> float:
        return round(statistics.median(pick(run) for run in runs), 2)

    parts = {label: middle(lambda run: run["rows"][key]) for key, label in ROWS.items()}
    with_timers = {label: middle(lambda run: run["with_timers"][key])
                   for key, label in ROWS.items()}
    parts[BACKGROUND] = with_timers[BACKGROUND] = middle(lambda run: run["background"])

    experiment = services.catalog.get(settings.default_experiment)
    variation = services.registry.get(VARIATION_KEY)
    control = services.registry.get(CONTROL_KEY)
    row = json.loads(FEATURES)  # the requests' features
    fresh = (f"new-{uuid.uuid4().hex}" for _ in itertools.count())

    def new_uid():
        services.assigner.assign(experiment, next(fresh))

    def outcome():  # a returning uid converts: /feedback's transaction
        services.events.record_outcome(experiment.id, next_uid(), "conversion", 1.0,
                                       uuid.uuid4().hex)

    sometimes = {
        "Redis GET: a returning uid new to this worker (loopback round trip, wall µs)":
            wall_us(lambda: services.cache.get(experiment.id, next_uid()), 2000),
        "a new uid: Redis claim and MariaDB insert of its exposure (wall µs)":
            wall_us(new_uid, 200),
        "a new uid, CPU of the request's thread (µs)": cpu_us(new_uid, 200),
        "an outcome: its row and counters in one MariaDB transaction (wall µs)":
            wall_us(outcome, 200),
        "an outcome, CPU of the request's thread (µs)": cpu_us(outcome, 200),
        "model alone in a loop, control, fast path (µs)": wall_us(lambda: control.predict(row),
                                                                  calls),
        "model alone in a loop, variation, fast path (µs)":
            wall_us(lambda: variation.predict(row), calls),
        "model alone in a loop, variation through scikit-learn's predict_proba (µs)":
            wall_us(lambda: variation.estimator.predict_proba([row]), 500),
    }
    services.drain(timeout=1)
    return {"whole_request_us": {"full app, returning uid": median(plain["full"]),
                                 "bare endpoint (same models, alternating)": median(plain["bare"])},
            "timers_hit": sorted(name for name, ns in timers.ns.items() if ns > 0),
            # The timed request less the untimed one, per timed call: what each timer adds
            # to the row its caller is in; "parts_us" has it taken out.
            "timers": {"calls_per_request": middle(lambda run: run["timed_calls"]),
                       "cost_us_each": middle(lambda run: run["cost"]),
                       "whole_request_us": middle(lambda run: run["wall"])},
            "parts_us": parts, "parts_us_with_timers": with_timers, "sometimes": sometimes}


@contextmanager
def environment(**values: str):
    """These environment variables for the block; as they were afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def median(values) -> float:
    return round(statistics.median(values), 2)


def per_call_us(fn, calls: int) -> float:
    """Wall time of `calls` calls of fn, in µs per call."""
    started = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - started) / calls / 1000


def wall_us(fn, calls: int) -> float:
    return round(per_call_us(fn, calls), 2)


def cpu_us(fn, calls: int) -> float:
    """CPU time of the calling thread for `calls` calls of fn, in µs per call (time spent
    waiting for Redis or the database left out)."""
    started = time.thread_time_ns()
    for _ in range(calls):
        fn()
    return round((time.thread_time_ns() - started) / calls / 1000, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000, help="requests per round")
    parser.add_argument("--mysql-root", default=os.environ.get(
        "BENCH_MYSQL_ROOT", "mysql+pymysql://root:@127.0.0.1:3306"))
    parser.add_argument("--redis-url", default=os.environ.get(
        "BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ml_api_stages_") as workdir, \
            environment(PROMETHEUS_MULTIPROC_DIR=os.environ.get("PROMETHEUS_MULTIPROC_DIR",
                                                                workdir)):
        # Metrics in files, as under gunicorn, when ml_api and prometheus_client load here.
        from load_test.bench import bench_backends

        with bench_backends(args.mysql_root, args.redis_url) as settings:
            figures = measure(settings, args.rounds, args.calls)
    summary = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "config": f"one thread, {args.rounds} rounds of {args.calls} requests, "
                         f"{USERS} returning uids, real Redis + MariaDB, {os.cpu_count()} cores",
               **figures}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"stages-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"{'part of a /predict request (full app, in-process)':<80} {'µs':>7} "
          f"{'timed':>7}")
    for name, value in summary["parts_us"].items():
        print(f"{name:<80} {value:>7.2f} {summary['parts_us_with_timers'][name]:>7.2f}")
    timers = summary["timers"]
    rows = sum(v for k, v in summary["parts_us"].items() if k != BACKGROUND)
    print(f"{'sum of the rows (background threads apart)':<80} {rows:>7.2f} "
          f"{timers['whole_request_us']:>7.2f}")
    for name, value in summary["whole_request_us"].items():
        print(f"{'whole request without the timers (wall), ' + name:<80} {value:>7.2f}")
    print(f"timers: {timers['calls_per_request']:.2f} a request, {timers['cost_us_each']:.2f} "
          "µs each, taken out of the row of their caller")
    for name, value in summary["sometimes"].items():
        print(f"{name:<80} {value:>7.2f}")
    print(f"summary written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
