"""A scripted pair of experiments, and what the Kibana panels must say about its events.

`drive` runs it through any client of the service (Flask's test client in-process, or HTTP
through the container stack's nginx); `mismatches` evaluates every saved Lens panel over the
events the service emitted (tests/lens_eval.py) and lists where they disagree with
GET /experiments/<name>/results. Used by tests/test_kibana_meaning.py and the stack test.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from tests.lens_eval import evaluate

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = [json.loads(line) for line in (ROOT / "kibana" / "ml_api.ndjson").read_text()
           .splitlines()]
VIEWS = {o["id"]: o for o in OBJECTS if o["type"] == "index-pattern"}
PANELS = {o["id"]: o for o in OBJECTS if o["type"] == "lens"}
INTERVAL = timedelta(milliseconds=50)
TOLERANCE = 5e-4  # agree to the third decimal
# A demo row the models accept, without loading the training set (the stack test uses it).
FEATURES = [13.5, 14.4, 87.5, 566.3, 0.098, 0.081, 0.067, 0.044, 0.18, 0.062]

# call(method, path, body, admin) -> (status, JSON body)
Call = Callable[[str, str, "dict | None", bool], "tuple[int, dict]"]


def drive(call: Call, prefix: str = "", settle_seconds: float = 0.1) -> dict:
    """Two running experiments with the same group names: `<prefix>pricing` is decided on
    its "purchase" rate and guarded by "refund_request"; `<prefix>ranking` on the mean of
    "revenue". Pricing's weights change, it is paused and started again; outcomes of early
    consumers keep arriving after the late window starts. Returns the experiments' names,
    the late window's start and each consumer's group in pricing."""
    pricing, ranking = f"{prefix}pricing", f"{prefix}ranking"

    def ok(method, path, body=None, admin=False, status=200):
        got, answer = call(method, path, body, admin)
        assert got == status, (method, path, got, answer)
        return answer

    variants = [{"name": "control", "model": "logreg@1", "weight": 1},
                {"name": "treatment", "model": "gboost@1", "weight": 1}]
    ok("POST", "/experiments", {
        "name": pricing, "metric": "purchase", "variants": variants,
        "guardrails": [{"metric": "refund_request", "worse": "higher", "tolerance": 1.0}]},
       True, 201)
    ok("POST", "/experiments", {"name": ranking, "metric": "revenue", "metric_type": "mean",
                                "variants": variants}, True, 201)
    for name in (pricing, ranking):
        ok("POST", f"/experiments/{name}/start", admin=True)
    time.sleep(settle_seconds)  # every worker sees the experiments

    def visit(uid, experiment):
        return ok("POST", "/predict", {"uid": f"{prefix}{uid}", "features": FEATURES,
                                       "experiment": experiment})["group"]

    def outcome(uid, experiment, metric, value, event_id=None):
        body = {"uid": f"{prefix}{uid}", "experiment": experiment, "metric": metric,
                "value": value}
        ok("POST", "/feedback", body | ({"event_id": f"{prefix}{event_id}"} if event_id
                                        else {}), status=202)

    groups = {}
    for i in range(40):  # phase 1: even weights
        groups[i] = visit(f"u{i}", pricing)
        visit(f"u{i}", ranking)
    ok("PATCH", f"/experiments/{pricing}", {"weights": {"control": 1, "treatment": 3}}, True)
    time.sleep(settle_seconds)
    for i in range(40, 70):  # phase 2: most new consumers to the treatment
        groups[i] = visit(f"u{i}", pricing)
        visit(f"u{i}", ranking)
        visit(f"u{i - 40}", pricing)  # returning consumers: no new exposure
    ok("POST", f"/experiments/{pricing}/pause", admin=True)
    time.sleep(settle_seconds)
    for i in range(70, 75):  # paused: served, never exposed
        visit(f"u{i}", pricing)
    ok("POST", f"/experiments/{pricing}/start", admin=True)
    time.sleep(settle_seconds)
    for i in range(0, 70, 3):  # conversions, a refund and a duplicate
        outcome(f"u{i}", pricing, "purchase", 10.0, event_id=f"p{i}")
    outcome("u0", pricing, "purchase", -10.0)
    outcome("u3", pricing, "purchase", 10.0, event_id="p3")
    for i in range(0, 70, 5):
        outcome(f"u{i}", pricing, "refund_request", 1.0 + 2 * (groups[i] == "treatment"))
    for i in range(0, 70, 2):
        outcome(f"u{i}", ranking, "revenue", float(i % 7))
        outcome(f"u{i}", ranking, "clicks", 3.0)  # not its metric
    ok("POST", "/predict", {"uid": f"{prefix}bad", "features": [1], "experiment": pricing},
       status=422)  # an error before any assignment: no group yet
    time.sleep(max(settle_seconds, 2 * INTERVAL.total_seconds()))
    late = datetime.now(timezone.utc)
    time.sleep(max(settle_seconds, 2 * INTERVAL.total_seconds()))
    for i in range(75, 80):  # few new consumers in the late window ...
        groups[i] = visit(f"u{i}", pricing)
    outcome("u75", pricing, "purchase", 5.0)
    for i in range(1, 70, 3):  # ... while early ones keep converting
        outcome(f"u{i}", pricing, "purchase", 5.0)
    return {"names": {"pricing": pricing, "ranking": ranking}, "late": late, "groups": groups}


def panel(run: dict, vis_id: str, vis: dict | None = None, window=None, selection=None):
    """One panel evaluated over the run's events."""
    return evaluate(vis or PANELS[vis_id], run["events"], VIEWS, window=window,
                    selection=selection, interval=INTERVAL)


def close(a, b) -> bool:
    return a is not None and b is not None and abs(a - b) <= TOLERANCE


def variants_of(results: dict) -> dict:
    return {(results["experiment"], v["name"]): v for v in results["variants"]}


def check_exposures_equal_results(run, vis=None):
    counts = {}
    for row in panel(run, "ml-api-exposures", vis).rows:
        counts[row["split"]] = counts.get(row["split"], 0) + row["exposed"]
    for results in run["results"].values():
        for key, variant in variants_of(results).items():
            assert counts.get(key) == variant["exposures"], (key, counts.get(key),
                                                             variant["exposures"])


def check_rates_equal_results(run, vis=None):
    rates = {r["split"]: r["rate"] for r in panel(run, "ml-api-conversion-rate", vis).rows}
    for key, variant in variants_of(run["results"]["pricing"]).items():
        assert close(rates.get(key), variant["conversion_rate"]), (key, rates.get(key),
                                                                   variant["conversion_rate"])


def check_means_equal_results(run, vis=None):
    means = {r["split"]: r["mean"] for r in panel(run, "ml-api-mean-metric", vis).rows}
    for results in run["results"].values():
        for key, variant in variants_of(results).items():
            assert close(means.get(key), variant["mean"]), (key, means.get(key),
                                                            variant["mean"])


def check_guardrail_matches_results_harm(run, vis=None):
    rows = {(r["experiment"], r["group"]): r for r in panel(run, "ml-api-guardrails", vis).rows}
    name = run["names"]["pricing"]
    (check,) = run["results"]["pricing"]["guardrails"]
    harm = rows[(name, "treatment")]["guardrail1"] - rows[(name, "control")]["guardrail1"]
    assert close(harm, check["harm"]), (harm, check["harm"])


def check_late_rates_stay_at_most_one(run, vis=None):
    window = (run["late"], datetime.now(timezone.utc))
    rows = panel(run, "ml-api-conversion-rate", vis, window=window).rows
    rates = [row["rate"] for row in rows if row["rate"] is not None]
    assert rates and max(rates) <= 1.0, max(rates or [None])


def check_annotations_are_the_actions(run, vis_id, vis=None):
    name = run["names"]["pricing"]
    actions = sorted((e["@timestamp"], e["action"]) for e in run["events"]
                     if e.get("event_type") == "action" and e.get("experiment") == name)
    assert {a for _, a in actions} >= {"create", "start", "update", "pause"}, actions
    got = panel(run, vis_id, vis, selection=name).annotations
    assert sorted((e["@timestamp"], e["action"]) for e in got) == actions, (vis_id, got)


def check_no_panel_mixes_experiments(run, vis_id, vis=None):
    rows = panel(run, vis_id, vis).rows
    assert rows, vis_id
    for row in rows:
        assert len(row["_experiments"] - {None}) <= 1, (vis_id, row)


def check_errors_before_an_assignment_say_no_group_yet(run, vis=None):
    rows = panel(run, "ml-api-error-rate", vis).rows
    assert any(r["group"] == "no group yet" and r["endpoint"] == "/predict" and r["requests"]
               for r in rows), "no 'no group yet' row"


def mismatches(run: dict) -> list[str]:
    """Every check of the panels' meaning over `run` (events, results by role, names, late),
    as a list of what failed; empty when the panels say what /results says."""
    checks = [check_exposures_equal_results, check_rates_equal_results,
              check_means_equal_results, check_guardrail_matches_results_harm,
              check_late_rates_stay_at_most_one, check_errors_before_an_assignment_say_no_group_yet]
    checks += [lambda r, v=v: check_annotations_are_the_actions(r, v)
               for v in ("ml-api-exposures", "ml-api-conversion-rate")]
    checks += [lambda r, v=v: check_no_panel_mixes_experiments(r, v) for v in sorted(PANELS)]
    failed = []
    for check in checks:
        try:
            check(run)
        except AssertionError as exc:
            failed.append(f"{getattr(check, '__name__', 'check')}: {exc}")
    return failed


def of_experiments(events: list[dict], names: set[str]) -> list[dict]:
    """The events of these experiments (a stack's sink holds every experiment's)."""
    return [e for e in events if e.get("experiment") in names]
