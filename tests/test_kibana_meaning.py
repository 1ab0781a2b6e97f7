"""The Kibana panels mean what /results says. A scripted pair of experiments runs through the
service in-process; the events it emits (those Logstash receives) are evaluated panel by
panel with tests/lens_eval.py, as Elasticsearch and Kibana would, and compared with
GET /experiments/<name>/results. Each defect the dashboard once had is kept as a named
negative case: the panel with that defect put back fails the same check."""
import copy
from datetime import datetime, timezone

import pytest

from ml_api import create_app
from tests.conftest import ADMIN_TOKEN
from tests.kibana_scenario import (
    PANELS,
    check_annotations_are_the_actions,
    check_guardrail_matches_results_harm,
    check_errors_before_an_assignment_say_no_group_yet,
    check_exposures_equal_results,
    check_late_rates_stay_at_most_one,
    check_means_equal_results,
    check_no_panel_mixes_experiments,
    check_rates_equal_results,
    drive,
    mismatches,
    panel,
)
from tests.lens_eval import Unsupported, kql
from tests.telemetry_capture import capture_events

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Actor": "analyst"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, models_dir):
    """The scripted experiments run in-process on the embedded default, with the events the
    service emitted (what Logstash would receive) and each experiment's /results."""
    from ml_api.settings import Settings
    from ml_api.wiring import init_database
    tmp = tmp_path_factory.mktemp("meaning")
    settings = Settings(database_url=f"sqlite:///{tmp / 'ml_api.sqlite3'}",
                        models_dir=models_dir, experiment_refresh_seconds=0,
                        supervisor_interval_seconds=0, admin_token=ADMIN_TOKEN,
                        spool_path=tmp / "spool.sqlite3")
    init_database(settings)
    app = create_app(settings)
    client = app.test_client()

    def call(method, path, body, admin):
        response = client.open(path, method=method, json=body,
                               headers=HEADERS if admin else {})
        return response.status_code, response.get_json()

    with capture_events(app) as sent:
        run = drive(call)
    results = {role: call("GET", f"/experiments/{name}/results", None, True)[1]
               for role, name in run["names"].items()}
    return {**run, "events": sent, "results": results}


def last_by_series(rows, column):
    """{(experiment, group): the value of `column` in the series' last time bucket}."""
    return {row["split"]: row[column] for row in rows}


# --- the panels mean what /results says -------------------------------------------------

def test_a_lost_exposure_event_is_a_mismatch(run):
    lost = next(i for i, e in enumerate(run["events"]) if e.get("first_exposure"))
    broken = {**run, "events": run["events"][:lost] + run["events"][lost + 1:]}
    assert any(m.startswith("check_exposures_equal_results") for m in mismatches(broken))


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
    rate = last_by_series([r for r in rows if r["split"][0] == "pricing"], "rate")
    late = [run["groups"][i] for i in range(75, 80)]  # u75 converted, the others did not
    assert set(rate) == {("pricing", group) for group in late}
    for group in set(late):
        expected = (group == run["groups"][75]) / late.count(group)
        assert rate[("pricing", group)] == pytest.approx(expected)


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


def test_a_stacks_sink_is_narrowed_to_the_scripted_experiments():
    from tests.kibana_scenario import of_experiments
    events = [{"experiment": "a", "n": 1}, {"experiment": "b"}, {"event_type": "metric"},
              {"experiment": "c", "event_type": "action"}]
    assert of_experiments(events, {"a", "c"}) == [events[0], events[3]]


def test_the_demo_row_is_one_the_models_accept():
    from tests.helpers import FEATURE_NAMES
    from tests.kibana_scenario import FEATURES
    assert len(FEATURES) == len(FEATURE_NAMES)
