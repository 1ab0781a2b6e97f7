"""Builds kibana/ml_api.ndjson: the data views, Lens visualizations, saved search and
dashboard of the stack, in Kibana 8's saved-object format.

    python kibana/saved_objects.py      # rewrites ml_api.ndjson (a test checks it is current)

What the panels mean (docs/observability.md has one line each; tests/test_kibana_meaning.py
evaluates them over the service's events and compares with /results):
- Every panel splits by experiment and group, so the same group name in two experiments is
  never summed, with or without a selection in the experiment selector.
- Exposures, rates and means read the cohort data view, whose time field is `exposed_at`,
  the consumer's first exposure (on exposure and outcome events alike): the time picker
  selects consumers first exposed in the window, with all their outcomes. Over the
  experiment's whole range that is /results; over a shorter window it is the rate among the
  consumers first exposed in it, and a rate never exceeds 1.
- Rates and means use the outcomes whose `metric_role` is "primary" (the experiment's own
  metric, whatever its name); guardrails are a table of their own.
- Panel queries are empty: filters sit on the columns, so the action annotations see only
  the dashboard's filters.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lens_columns import (  # noqa: E402  (a sibling module, also run as a script)
    LAYER, action_annotations, metric, over_time, ratio, table, top_values, xy,
)

OUTPUT = Path(__file__).with_name("ml_api.ndjson")
REQUESTS, METRICS = "ml-api-requests", "ml-api-metrics"
COHORTS = "ml-api-cohorts"  # the request events by the consumer's first exposure
PARSE_FAILURES = "ml-api-parse-failures"  # lines Logstash could not read as JSON
VERSION = "8.19.20"
REQUEST = 'event_type : "request"'
EXPOSED = REQUEST + " and first_exposure : true"
PRIMARY = REQUEST + ' and metric_role : "primary"'
GUARDRAIL_SLOTS = 3  # guardrails shown, by their place in the experiment's settings
# Errors before an assignment have no group: this runtime field names them.
GROUP_LABEL = {"group_label": {"type": "keyword", "script": {"source": (
    "emit(doc['group'].size() == 0 ? 'no group yet' : doc['group'].value)")}}}


def data_view(view_id: str, title: str, time_field: str = "@timestamp",
              runtime: dict | None = None) -> dict:
    attributes = {"title": title, "timeFieldName": time_field, "name": view_id}
    if runtime:
        attributes["runtimeFieldMap"] = json.dumps(runtime, sort_keys=True)
    return {"type": "index-pattern", "id": view_id, "attributes": attributes,
            "references": [], "typeMigrationVersion": "8.0.0", "coreMigrationVersion": "8.8.0"}


def lens(vis_id: str, title: str, description: str, visualization_type: str,
         columns: dict[str, dict], visualization: dict, view: str = COHORTS,
         annotations: bool = False) -> dict:
    """A Lens visualization of one data layer on `view` (and, with `annotations`, the
    experiment actions on its time axis, from the requests data view). No panel query."""
    layer = {"columns": columns, "columnOrder": list(columns), "incompleteColumns": {}}
    references = [{"type": "index-pattern", "id": view,
                   "name": f"indexpattern-datasource-layer-{LAYER}"}]
    if annotations:
        visualization["layers"].append(action_annotations("actions"))
        references.append({"type": "index-pattern", "id": REQUESTS,
                           "name": "xy-visualization-layer-actions"})
    state = {"datasourceStates": {"formBased": {"layers": {LAYER: layer}}},
             "visualization": visualization, "query": {"query": "", "language": "kuery"},
             "filters": [], "internalReferences": [], "adHocDataViews": {}}
    return {"type": "lens", "id": vis_id, "references": references,
            "attributes": {"title": title, "description": description,
                           "visualizationType": visualization_type, "state": state},
            "typeMigrationVersion": "8.9.0", "coreMigrationVersion": "8.8.0"}


def exposed() -> dict:
    return metric("count", "Exposed consumers", kql=EXPOSED)


WINDOW = ("Time range = when consumers were first exposed: over the experiment's whole "
          "range this equals /results; over a shorter one, it is among the consumers first "
          "exposed in it.")


def panels() -> list[dict]:
    split = top_values("experiment", "group")
    exposures = lens(
        "ml-api-exposures", "Exposed consumers per experiment and group over time",
        "Consumers first exposed, by the time of their first exposure; the experiment's "
        "actions as annotations.", "lnsXY",
        {"time": over_time("exposed_at"), "split": split, "exposed": exposed()},
        xy("bar_stacked", "time", ["exposed"], "split"), annotations=True)
    share = lens(
        "ml-api-exposure-share", "Observed share of exposed consumers per group",
        "Each experiment's exposed consumers split by group (compare with the weights "
        "on /dashboard). " + WINDOW, "lnsXY",
        {"experiment": top_values("experiment"), "group": top_values("group"),
         "exposed": exposed()},
        xy("bar_horizontal_percentage_stacked", "experiment", ["exposed"], "group"))
    rate = lens(
        "ml-api-conversion-rate", "Conversion rate per group (primary metric)",
        "Converting consumers / exposed consumers, on the experiment's primary metric, "
        "running over first-exposure time. " + WINDOW, "lnsXY",
        {"time": over_time("exposed_at"), "split": split,
         **ratio("rate", "Conversion rate",
                 metric("sum", "Converting consumers", "conversion_change", kql=PRIMARY),
                 exposed(), running=True)},
        xy("line", "time", ["rate"], "split"), annotations=True)
    mean = lens(
        "ml-api-mean-metric", "Mean of the primary metric per exposed consumer",
        "Sum of the primary metric's outcome values / exposed consumers, running over "
        "first-exposure time. " + WINDOW, "lnsXY",
        {"time": over_time("exposed_at"), "split": split,
         **ratio("mean", "Mean per exposed consumer",
                 metric("sum", "Outcome value", "value",
                        kql=PRIMARY + " and not duplicate : true"),
                 exposed(), running=True)},
        xy("line", "time", ["mean"], "split"))
    guardrails = {}
    for slot in range(1, GUARDRAIL_SLOTS + 1):
        guardrails.update(ratio(
            f"guardrail{slot}", f"Guardrail {slot}: mean per exposed consumer",
            metric("sum", f"Guardrail {slot} value", "value",
                   kql=f'{REQUEST} and metric_role : "guardrail" and guardrail : {slot} '
                       "and not duplicate : true"),
            exposed(), running=False))
    guard = lens(
        "ml-api-guardrails", "Guardrail metrics: mean per exposed consumer",
        "Guardrail N is the experiment's N-th guardrail (GET /experiments/<name>): its "
        "outcome values / exposed consumers, as /results' guardrail harm compares them. "
        + WINDOW, "lnsDatatable",
        {"experiment": top_values("experiment"), "group": top_values("group"),
         "exposed": exposed(), **guardrails},
        table(["experiment", "group"], ["exposed"] + [
            f"guardrail{s}" for s in range(1, GUARDRAIL_SLOTS + 1)]))
    predictions = REQUEST + ' and endpoint : "/predict" and status < 400'
    latency = lens(
        "ml-api-latency", "Latency per group, model name and version (ms)",
        "Whole-request latency percentiles of served predictions, by request time.",
        "lnsDatatable",
        {"experiment": top_values("experiment"), "group": top_values("group"),
         "model": top_values("model_name"), "version": top_values("model_version"),
         **{f"p{q}": metric("percentile", f"p{q}", "latency_ms", kql=predictions,
                            percentile=q) for q in (50, 95, 99)}},
        table(["experiment", "group", "model", "version"], ["p50", "p95", "p99"]),
        view=REQUESTS)
    errors = lens(
        "ml-api-error-rate", "Error rate per group and endpoint",
        "Requests and server errors (status >= 500), by request time; errors before an "
        "assignment under \"no group yet\".", "lnsDatatable",
        {"experiment": top_values("experiment"), "group": top_values("group_label"),
         "endpoint": top_values("endpoint"),
         "requests": metric("count", "Requests", kql=REQUEST),
         "errors": metric("count", "Errors (status >= 500)", kql=REQUEST + " and status >= 500")},
        table(["experiment", "group", "endpoint"], ["requests", "errors"]), view=REQUESTS)
    codes = lens(
        "ml-api-error-codes", "Top error codes per group",
        "Requests answered with an error code, by request time; \"no group yet\" before "
        "an assignment.", "lnsDatatable",
        {"experiment": top_values("experiment"), "group": top_values("group_label"),
         "code": top_values("error_code", size=10),
         "count": metric("count", "Errors", kql=REQUEST + " and error_code : *")},
        table(["experiment", "group", "code"], ["count"]), view=REQUESTS)
    return [exposures, share, rate, mean, guard, latency, errors, codes]


def objects() -> list[dict]:
    shown = panels()
    search = {
        "type": "search", "id": "ml-api-errors",
        "attributes": {"title": "ml_api: errors", "description": "Every request that failed",
                       "columns": ["experiment", "group", "endpoint", "status", "error_code",
                                   "model_name", "model_version"],
                       "sort": [["@timestamp", "desc"]],
                       "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({
                           "query": {"query": REQUEST + " and error_code : *",
                                     "language": "kuery"}, "filter": [],
                           "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"})}},
        "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index",
                        "type": "index-pattern", "id": REQUESTS}],
        "typeMigrationVersion": "8.0.0", "coreMigrationVersion": "8.8.0"}
    views = [data_view(REQUESTS, f"{REQUESTS}-*", runtime=GROUP_LABEL),
             data_view(COHORTS, f"{REQUESTS}-*", time_field="exposed_at"),
             data_view(METRICS, f"{METRICS}-*"),
             data_view(PARSE_FAILURES, f"{PARSE_FAILURES}-*")]
    return [*views, *shown, search, dashboard(shown, search)]


def dashboard(panels: list[dict], search: dict) -> dict:
    layout = [(0, 0, 32, 14), (32, 0, 16, 14), (0, 14, 24, 14), (24, 14, 24, 14),
              (0, 28, 24, 12), (24, 28, 24, 12), (0, 40, 24, 12), (24, 40, 24, 12),
              (0, 52, 48, 12)]
    shown = [*panels, search]
    panels_json = [{"type": p["type"], "panelIndex": str(i), "panelRefName": f"panel_{i}",
                    "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(i)},
                    "embeddableConfig": {"enhancements": {}}, "version": VERSION}
                   for i, (p, (x, y, w, h)) in enumerate(zip(shown, layout))]
    control = {"experiment": {
        "order": 0, "width": "medium", "grow": True, "type": "optionsListControl",
        "explicitInput": {"id": "experiment", "fieldName": "experiment", "title": "Experiment",
                          "singleSelect": True, "enhancements": {}}}}
    return {
        "type": "dashboard", "id": "ml-api-overview",
        "attributes": {
            "title": "ml_api: A/B experiment",
            "description": "Pick one experiment (or open it from /dashboard): exposures, "
                           "conversion, means, guardrails, latency and errors per group, "
                           "with the experiment's actions as annotations",
            "panelsJSON": json.dumps(panels_json),
            "controlGroupInput": {
                "controlStyle": "oneLine", "chainingSystem": "HIERARCHICAL",
                "panelsJSON": json.dumps(control),
                "ignoreParentSettingsJSON": json.dumps({
                    "ignoreFilters": False, "ignoreQuery": False, "ignoreTimerange": False,
                    "ignoreValidations": False})},
            "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False,
                                       "syncColors": True, "syncCursor": True}),
            "timeRestore": True, "timeFrom": "now-24h", "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 30000}, "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                {"query": {"query": "", "language": "kuery"}, "filter": []})}},
        "references": [{"name": f"panel_{i}", "type": p["type"], "id": p["id"]}
                       for i, p in enumerate(shown)]
        + [{"name": "controlGroup_experiment:optionsListDataView", "type": "index-pattern",
            "id": REQUESTS}],
        "typeMigrationVersion": "8.9.0", "coreMigrationVersion": "8.8.0"}


def render() -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects())


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
