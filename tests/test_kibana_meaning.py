"""The Kibana panels mean what /results says. A scripted pair of experiments runs through the
service in-process; the events it emits (those Logstash receives) are evaluated panel by
panel with tests/lens_eval.py, as Elasticsearch and Kibana would, and compared with
GET /experiments/<name>/results. Each defect the dashboard once had is kept as a named
negative case: the panel with that defect put back fails the same check."""
import copy
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from ml_api import create_app
from tests.conftest import ADMIN_TOKEN
from tests.helpers import FEATURES, ROOT
from tests.lens_eval import Unsupported, evaluate, kql

OBJECTS = [json.loads(line) for line in (ROOT / "kibana" / "ml_api.ndjson").read_text()
           .splitlines()]
VIEWS = {o["id"]: o for o in OBJECTS if o["type"] == "index-pattern"}
PANELS = {o["id"]: o for o in OBJECTS if o["type"] == "lens"}
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Actor": "analyst"}
INTERVAL = timedelta(milliseconds=50)


def scripted_run(settings) -> dict:
    """Two running experiments with the same group names. "pricing" is decided on its
    "purchase" rate and guarded by "refund_request"; "ranking" on the mean of "revenue".
    Pricing's weights change, it is paused and started again; outcomes of early consumers
    keep arriving after the late window starts."""
    app = create_app(settings)
    events = app.extensions["ml_api"].request_events
    sent: list[dict] = []

    class Collect:  # stands where the Logstash transport would
        def send(self, lines, use_logging=False):
            sent.extend(json.loads(line) for line in lines)

    events.shipper.transport = Collect()
    client = app.test_client()

    def ok(response, status=200):
        assert response.status_code == status, response.get_json()
        return response.get_json()

    variants = [{"name": "control", "model": "logreg@1", "weight": 1},
                {"name": "treatment", "model": "gboost@1", "weight": 1}]
    ok(client.post("/experiments", headers=HEADERS, json={
        "name": "pricing", "metric": "purchase", "variants": variants,
        "guardrails": [{"metric": "refund_request", "worse": "higher", "tolerance": 1.0}]}),
        201)
    ok(client.post("/experiments", headers=HEADERS, json={
        "name": "ranking", "metric": "revenue", "metric_type": "mean", "variants": variants}),
        201)
    for name in ("pricing", "ranking"):
        ok(client.post(f"/experiments/{name}/start", headers=HEADERS))

    def visit(uid: str, experiment: str) -> str:
        return ok(client.post("/predict", json={"uid": uid, "features": FEATURES,
                                                "experiment": experiment}))["group"]

    def outcome(uid, experiment, metric, value, event_id=None, status=202):
        body = {"uid": uid, "experiment": experiment, "metric": metric, "value": value}
        ok(client.post("/feedback", json=body | ({"event_id": event_id} if event_id else {})),
           status)

    groups = {}
    for i in range(40):  # phase 1: even weights
        groups[i] = visit(f"u{i}", "pricing")
        visit(f"u{i}", "ranking")
    ok(client.patch("/experiments/pricing", headers=HEADERS,
                    json={"weights": {"control": 1, "treatment": 3}}))
    for i in range(40, 70):  # phase 2: most new consumers to the treatment
        groups[i] = visit(f"u{i}", "pricing")
        visit(f"u{i}", "ranking")
        visit(f"u{i - 40}", "pricing")  # returning consumers: no new exposure
    ok(client.post("/experiments/pricing/pause", headers=HEADERS))
    for i in range(70, 75):  # paused: served, never exposed
        visit(f"u{i}", "pricing")
    ok(client.post("/experiments/pricing/start", headers=HEADERS))
    for i in range(0, 70, 3):  # early conversions, a refund and a duplicate
        outcome(f"u{i}", "pricing", "purchase", 10.0, event_id=f"p{i}")
    outcome("u0", "pricing", "purchase", -10.0)
    outcome("u3", "pricing", "purchase", 10.0, event_id="p3")  # a duplicate
    for i in range(0, 70, 5):
        outcome(f"u{i}", "pricing", "refund_request", 1.0 + 2 * (groups[i] == "treatment"))
    for i in range(0, 70, 2):
        outcome(f"u{i}", "ranking", "revenue", float(i % 7))
        outcome(f"u{i}", "ranking", "clicks", 3.0)  # not its metric
    ok(client.post("/predict", json={"uid": "bad", "features": [1]}), 422)  # no group yet
    time.sleep(2 * INTERVAL.total_seconds())
    late = datetime.now(timezone.utc)
    time.sleep(2 * INTERVAL.total_seconds())
    for i in range(75, 80):  # few new consumers in the late window ...
        groups[i] = visit(f"u{i}", "pricing")
    outcome("u75", "pricing", "purchase", 5.0)
    for i in range(1, 70, 3):  # ... while early ones keep converting
        outcome(f"u{i}", "pricing", "purchase", 5.0)
    assert events.shipper.flush()
    results = {name: ok(client.get(f"/experiments/{name}/results", headers=HEADERS))
               for name in ("pricing", "ranking")}
    return {"events": sent, "results": results, "late": late}


@pytest.fixture(scope="module")
def run(tmp_path_factory, models_dir):
    from ml_api.wiring import init_database
    from ml_api.settings import Settings
    tmp = tmp_path_factory.mktemp("meaning")
    settings = Settings(database_url=f"sqlite:///{tmp / 'ml_api.sqlite3'}",
                        models_dir=models_dir, experiment_refresh_seconds=0,
                        supervisor_interval_seconds=0, admin_token=ADMIN_TOKEN,
                        spool_path=tmp / "spool.sqlite3")
    init_database(settings)
    return scripted_run(settings)


def panel(run, vis_id, vis=None, window=None, selection=None):
    return evaluate(vis or PANELS[vis_id], run["events"], VIEWS, window=window,
                    selection=selection, interval=INTERVAL)


def last_by_series(rows, column):
    """{(experiment, group): the value of `column` in the series' last time bucket}."""
    return {row["split"]: row[column] for row in rows}


def variants_of(results):
    return {(results["experiment"], v["name"]): v for v in results["variants"]}


# --- the checks, each used by the positive test and by its negative case -------------------

def check_exposures_equal_results(run, vis=None):
    counts = {}
    for row in panel(run, "ml-api-exposures", vis).rows:
        counts[row["split"]] = counts.get(row["split"], 0) + row["exposed"]
    for name, results in run["results"].items():
        for key, variant in variants_of(results).items():
            assert counts.get(key) == variant["exposures"], (key, counts)


def check_rates_equal_results(run, vis=None):
    rates = last_by_series(panel(run, "ml-api-conversion-rate", vis).rows, "rate")
    for key, variant in variants_of(run["results"]["pricing"]).items():
        assert rates[key] == pytest.approx(variant["conversion_rate"], abs=5e-4), key


def check_means_equal_results(run, vis=None):
    means = last_by_series(panel(run, "ml-api-mean-metric", vis).rows, "mean")
    for name in ("pricing", "ranking"):
        for key, variant in variants_of(run["results"][name]).items():
            assert means[key] == pytest.approx(variant["mean"], abs=5e-4), key


def check_late_rates_stay_at_most_one(run, vis=None):
    window = (run["late"], datetime.now(timezone.utc))
    rows = panel(run, "ml-api-conversion-rate", vis, window=window).rows
    rates = [row["rate"] for row in rows if row["rate"] is not None]
    assert rates and max(rates) <= 1.0, max(rates)


def check_annotations_are_the_actions(run, vis_id, vis=None):
    actions = sorted((e["@timestamp"], e["action"]) for e in run["events"]
                     if e["event_type"] == "action" and e["experiment"] == "pricing")
    assert {a for _, a in actions} >= {"create", "start", "update", "pause"}
    got = panel(run, vis_id, vis, selection="pricing").annotations
    assert sorted((e["@timestamp"], e["action"]) for e in got) == actions


def check_no_panel_mixes_experiments(run, vis_id, vis=None):
    rows = panel(run, vis_id, vis).rows
    assert rows
    for row in rows:
        assert len(row["_experiments"] - {None}) <= 1, (vis_id, row)


def check_errors_before_an_assignment_say_no_group_yet(run, vis=None):
    rows = panel(run, "ml-api-error-rate", vis).rows
    assert any(r["group"] == "no group yet" and r["endpoint"] == "/predict" and r["requests"]
               for r in rows)


def check_guardrail_matches_results_harm(run, vis=None):
    rows = {(r["experiment"], r["group"]): r for r in panel(run, "ml-api-guardrails", vis).rows}
    (check,) = run["results"]["pricing"]["guardrails"]
    harm = rows[("pricing", "treatment")]["guardrail1"] - rows[("pricing", "control")][
        "guardrail1"]
    assert harm == pytest.approx(check["harm"], abs=5e-4)


# --- the panels mean what /results says -------------------------------------------------

def test_exposures_per_group_equal_results(run):
    check_exposures_equal_results(run)


def test_rates_on_the_primary_metric_equal_results_over_the_whole_range(run):
    check_rates_equal_results(run)


def test_means_of_the_primary_metric_equal_results(run):
    check_means_equal_results(run)


def test_the_guardrail_panel_gives_the_harm_results_gives(run):
    check_guardrail_matches_results_harm(run)


def test_over_a_late_window_rates_stay_at_most_one(run):
    check_late_rates_stay_at_most_one(run)


def test_over_a_late_window_the_rate_is_among_consumers_first_exposed_in_it(run):
    window = (run["late"], datetime.now(timezone.utc))
    rows = panel(run, "ml-api-conversion-rate", window=window).rows
    late = [e for e in run["events"] if e.get("first_exposure")
            and e["@timestamp"] >= run["late"].isoformat()[:23]]
    rate = last_by_series([r for r in rows if r["split"][0] == "pricing"], "rate")
    exposed = {e["group"]: 0 for e in late}
    for e in late:
        exposed[e["group"]] += 1
    converted = {g: 0 for g in exposed}
    converted[next(e["group"] for e in late if e["uid_hash"] == uid_hash(run, "u75"))] += 1
    for group, n in exposed.items():
        assert rate[("pricing", group)] == pytest.approx(converted[group] / n)


def uid_hash(run, uid):
    from ml_api.telemetry.request_log import uid_field
    return uid_field(uid, "hashed", "ml_api")["uid_hash"]


@pytest.mark.parametrize("vis_id", ["ml-api-exposures", "ml-api-conversion-rate"])
def test_annotations_return_the_experiments_actions(run, vis_id):
    check_annotations_are_the_actions(run, vis_id)


@pytest.mark.parametrize("vis_id", sorted(PANELS))
def test_no_panel_mixes_experiments_without_a_selection(run, vis_id):
    check_no_panel_mixes_experiments(run, vis_id)


def test_errors_before_an_assignment_are_under_no_group_yet(run):
    check_errors_before_an_assignment_say_no_group_yet(run)


def test_every_panel_is_within_the_evaluated_subset(run):
    for vis_id in PANELS:
        panel(run, vis_id)  # raises Unsupported otherwise


# --- each defect the dashboard had, put back, fails its check ---------------------------

def mutated(vis_id, change) -> dict:
    vis = copy.deepcopy(PANELS[vis_id])
    change(vis["attributes"]["state"])
    return vis


def columns_of(state) -> dict:
    return state["datasourceStates"]["formBased"]["layers"]["data"]["columns"]


def test_defect_panel_query_empties_the_annotations(run):
    def old_query(state):
        state["query"]["query"] = 'event_type : "request" and endpoint : "/predict"'
    with pytest.raises(AssertionError):
        check_annotations_are_the_actions(run, "ml-api-exposures",
                                          mutated("ml-api-exposures", old_query))


def test_defect_rate_hard_coded_on_conversion(run):
    def hard_coded(state):
        columns_of(state)["rateX0"]["filter"]["query"] = 'metric : "conversion"'
    vis = mutated("ml-api-conversion-rate", hard_coded)
    vis["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["data"]["columns"][
        "rate"]["params"]["formula"] = (
        "cumulative_sum(sum(conversion_change, kql='metric : \"conversion\"')) / "
        "cumulative_sum(count(kql='event_type : \"request\" and first_exposure : true'))")
    columns = columns_of(vis["attributes"]["state"])
    columns["rateX4"]["params"]["tinymathAst"]["text"] = columns["rate"]["params"]["formula"]
    with pytest.raises(AssertionError):
        check_rates_equal_results(run, vis)


def test_defect_running_sums_restart_at_the_window_by_request_time(run):
    def by_request_time(state):
        columns_of(state)["time"].update(label="@timestamp", sourceField="@timestamp")
    vis = mutated("ml-api-conversion-rate", by_request_time)
    for reference in vis["references"]:
        reference["id"] = "ml-api-requests"  # the old panel's data view
    with pytest.raises(AssertionError):
        check_late_rates_stay_at_most_one(run, vis)


def test_defect_mean_sums_every_metric(run):
    def every_metric(state):
        columns_of(state)["meanX0"]["filter"]["query"] = "not duplicate : true"
        formula = "cumulative_sum(sum(value, kql='not duplicate : true')) / cumulative_sum(" \
                  "count(kql='event_type : \"request\" and first_exposure : true'))"
        columns_of(state)["mean"]["params"]["formula"] = formula
    with pytest.raises(AssertionError):
        check_means_equal_results(run, mutated("ml-api-mean-metric", every_metric))


def test_defect_split_by_group_alone_sums_experiments(run):
    def by_group(state):
        split = columns_of(state)["split"]
        split.update(sourceField="group")
        split["params"].pop("secondaryFields")
    with pytest.raises(AssertionError):
        check_no_panel_mixes_experiments(run, "ml-api-exposures",
                                         mutated("ml-api-exposures", by_group))


def test_defect_missing_group_shown_as_missing_value(run):
    def missing_bucket(state):
        columns_of(state)["group"].update(sourceField="group")
        columns_of(state)["group"]["params"]["missingBucket"] = True
    with pytest.raises(AssertionError):
        check_errors_before_an_assignment_say_no_group_yet(
            run, mutated("ml-api-error-rate", missing_bucket))


# --- the evaluator refuses what it does not know --------------------------------------

@pytest.mark.parametrize("query", ['group : contr*', "group : control", "a.b : 1 or",
                                   'group : "a" and (b : 1', "status between 1 and 2"])
def test_kql_outside_the_subset_is_refused(query):
    with pytest.raises(Unsupported):
        kql(query)


def test_kql_of_the_subset_reads_as_elasticsearch_does():
    doc = {"event_type": "request", "status": 503, "duplicate": True, "group": "a"}
    assert kql('event_type : "request" and status >= 500')(doc)
    assert not kql("not duplicate : true")(doc)
    assert kql("not first_exposure : true")(doc)  # a missing field is not true
    assert kql('(group : "b" or group : "a") and error_code : * or status < 600')(doc)
    assert not kql("error_code : *")(doc)


@pytest.mark.parametrize("change", [
    lambda c: c["rateX1"].update(operationType="moving_average"),
    lambda c: c["rateX4"]["params"]["tinymathAst"].update(name="multiply"),
    lambda c: c["split"]["params"].update(otherBucket=True),
    lambda c: c["time"]["params"].update(interval="1h"),
], ids=["moving_average", "multiply", "other_bucket", "fixed_interval"])
def test_a_panel_outside_the_subset_cannot_be_checked(run, change):
    vis = mutated("ml-api-conversion-rate", lambda state: change(columns_of(state)))
    with pytest.raises(Unsupported):
        panel(run, "", vis)
