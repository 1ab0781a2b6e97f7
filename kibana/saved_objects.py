"""Builds kibana/ml_api.ndjson: the data views, Lens visualizations, saved search and
dashboard of the stack, in Kibana 8's saved-object format.

    python kibana/saved_objects.py      # rewrites ml_api.ndjson (a test checks it is current)

The dashboard has an experiment selector (an options list on `experiment`); every panel
reads the request events and splits by `group`, so group names that repeat across
experiments are never summed together. Rates are computed from the events alone:
exposed consumers are the events with `first_exposure : true`, converting consumers the
running sum of `conversion_change`.
"""
from __future__ import annotations

import json
from pathlib import Path

OUTPUT = Path(__file__).with_name("ml_api.ndjson")
REQUESTS, METRICS = "ml-api-requests", "ml-api-metrics"
PARSE_FAILURES = "ml-api-parse-failures"  # lines Logstash could not read as JSON
VERSION = "8.19.20"
LAYER = "data"
EXPOSED = "first_exposure : true"
PREDICTIONS = 'event_type : "request" and endpoint : "/predict"'
REQUEST_EVENTS = 'event_type : "request"'


def data_view(view_id: str) -> dict:
    return {"type": "index-pattern", "id": view_id,
            "attributes": {"title": f"{view_id}-*", "timeFieldName": "@timestamp",
                           "name": view_id},
            "references": [], "typeMigrationVersion": "8.0.0", "coreMigrationVersion": "8.8.0"}


# --- Lens columns -------------------------------------------------------------------------

def over_time() -> dict:
    return {"label": "@timestamp", "dataType": "date", "operationType": "date_histogram",
            "sourceField": "@timestamp", "isBucketed": True, "scale": "interval",
            "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False}}


def top_values(field: str, size: int = 10, missing: str | None = None) -> dict:
    """Terms on `field`; `missing`: also a bucket for events without the field."""
    return {"label": f"Top values of {field}", "dataType": "string", "operationType": "terms",
            "sourceField": field, "isBucketed": True, "scale": "ordinal",
            "params": {"size": size, "orderBy": {"type": "alphabetical", "fallback": False},
                       "orderDirection": "asc", "otherBucket": False,
                       "missingBucket": missing is not None, "parentFormat": {"id": "terms"}}}


def metric(operation: str, label: str, field: str = "___records___", kql: str | None = None,
           **params) -> dict:
    column = {"label": label, "customLabel": True, "dataType": "number",
              "operationType": operation, "sourceField": field, "isBucketed": False,
              "scale": "ratio", "params": {"emptyAsNull": operation != "count", **params}}
    if kql:
        column["filter"] = {"query": kql, "language": "kuery"}
    return column


def ratio_of_running_sums(column_id: str, label: str, numerator: dict,
                          denominator: dict) -> dict[str, dict]:
    """A formula column, cumulative_sum(numerator) / cumulative_sum(denominator), with the
    columns Lens keeps for it (its parts, their running sums and the division)."""
    parts = {f"{column_id}X0": numerator, f"{column_id}X2": denominator}
    columns = {}
    for part_id, part in parts.items():
        running_id = part_id[:-1] + str(int(part_id[-1]) + 1)
        columns[part_id] = {**part, "label": f"Part of {label}", "customLabel": True}
        columns[running_id] = {"label": f"Part of {label}", "customLabel": True,
                               "dataType": "number", "operationType": "cumulative_sum",
                               "isBucketed": False, "scale": "ratio", "references": [part_id]}
    formula = (f"cumulative_sum({formula_text(numerator)}) / "
               f"cumulative_sum({formula_text(denominator)})")
    columns[f"{column_id}X4"] = {
        "label": f"Part of {label}", "customLabel": True, "dataType": "number",
        "operationType": "math", "isBucketed": False, "scale": "ratio",
        "references": [f"{column_id}X1", f"{column_id}X3"],
        "params": {"tinymathAst": {"type": "function", "name": "divide",
                                   "args": [f"{column_id}X1", f"{column_id}X3"],
                                   "location": {"min": 0, "max": len(formula)},
                                   "text": formula}}}
    columns[column_id] = {"label": label, "customLabel": True, "dataType": "number",
                          "operationType": "formula", "isBucketed": False, "scale": "ratio",
                          "references": [f"{column_id}X4"],
                          "params": {"formula": formula, "isFormulaBroken": False}}
    return columns


def formula_text(column: dict) -> str:
    field = "" if column["operationType"] == "count" else column["sourceField"]
    kql = column.get("filter", {}).get("query")
    args = ", ".join(part for part in (field, f"kql='{kql}'" if kql else "") if part)
    return f"{column['operationType']}({args})"


# --- Lens visualizations --------------------------------------------------------------------

def lens(vis_id: str, title: str, visualization_type: str, columns: dict[str, dict],
         visualization: dict, query: str, annotations: bool = False) -> dict:
    """A Lens visualization of one data layer on the requests data view (and, with
    `annotations`, the experiment actions as annotations on its time axis)."""
    layer = {"columns": columns, "columnOrder": list(columns), "incompleteColumns": {}}
    references = [{"type": "index-pattern", "id": REQUESTS,
                   "name": f"indexpattern-datasource-layer-{LAYER}"}]
    if annotations:
        visualization["layers"].append({
            "layerId": "actions", "layerType": "annotations", "ignoreGlobalFilters": False,
            "annotations": [{
                "type": "query", "id": "experiment-actions", "label": "Experiment actions",
                "key": {"type": "point_in_time"}, "timeField": "@timestamp",
                "filter": {"type": "kibana_query", "query": 'event_type : "action"',
                           "language": "kuery"},
                "extraFields": ["action", "actor", "reason"], "icon": "triangle",
                "color": "#E7664C", "isHidden": False}]})
        references.append({"type": "index-pattern", "id": REQUESTS,
                           "name": "xy-visualization-layer-actions"})
    state = {"datasourceStates": {"formBased": {"layers": {LAYER: layer}}},
             "visualization": visualization, "query": {"query": query, "language": "kuery"},
             "filters": [], "internalReferences": [], "adHocDataViews": {}}
    return {"type": "lens", "id": vis_id, "references": references,
            "attributes": {"title": title, "description": "", "visualizationType":
                           visualization_type, "state": state},
            "typeMigrationVersion": "8.9.0", "coreMigrationVersion": "8.8.0"}


def xy(series: str, x: str, accessors: list[str], split: str) -> dict:
    return {"legend": {"isVisible": True, "position": "right"}, "valueLabels": "hide",
            "preferredSeriesType": series,
            "layers": [{"layerId": LAYER, "layerType": "data", "seriesType": series,
                        "xAccessor": x, "accessors": accessors, "splitAccessor": split}]}


def table(rows: list[str], metrics: list[str]) -> dict:
    return {"layerId": LAYER, "layerType": "data",
            "columns": [{"columnId": c} for c in rows + metrics]}


def objects() -> list[dict]:
    exposed = lens(
        "ml-api-exposures", "Exposed consumers per group over time", "lnsXY",
        {"time": over_time(), "group": top_values("group"),
         "exposed": metric("count", "Newly exposed consumers", kql=EXPOSED)},
        xy("bar_stacked", "time", ["exposed"], "group"), PREDICTIONS, annotations=True)
    share = lens(
        "ml-api-exposure-share", "Observed share of exposed consumers per group", "lnsPie",
        {"group": top_values("group"), "exposed": metric("count", "Exposed consumers",
                                                         kql=EXPOSED)},
        {"shape": "donut", "layers": [{"layerId": LAYER, "layerType": "data",
                                       "primaryGroups": ["group"], "metrics": ["exposed"],
                                       "numberDisplay": "percent", "categoryDisplay": "default",
                                       "legendDisplay": "show"}]}, PREDICTIONS)
    conversion = lens(
        "ml-api-conversion-rate", "Conversion rate per group (converting / exposed consumers)",
        "lnsXY",
        {"time": over_time(), "group": top_values("group"),
         **ratio_of_running_sums("rate", "Conversion rate",
                                 metric("sum", "Converting consumers", "conversion_change"),
                                 metric("count", "Exposed consumers", kql=EXPOSED))},
        xy("line", "time", ["rate"], "group"),
        REQUEST_EVENTS + f' and (metric : "conversion" or {EXPOSED})', annotations=True)
    mean = lens(
        "ml-api-mean-metric", "Mean outcome value per exposed consumer (mean experiments)",
        "lnsXY",
        {"time": over_time(), "group": top_values("group"),
         **ratio_of_running_sums("mean", "Mean value per exposed consumer",
                                 metric("sum", "Outcome value", "value",
                                        kql="not duplicate : true"),
                                 metric("count", "Exposed consumers", kql=EXPOSED))},
        xy("line", "time", ["mean"], "group"), REQUEST_EVENTS)
    latency = lens(
        "ml-api-latency", "Latency per group, model name and version (ms)", "lnsDatatable",
        {"group": top_values("group"), "model": top_values("model_name"),
         "version": top_values("model_version"),
         **{f"p{q}": metric("percentile", f"p{q}", "latency_ms", percentile=q)
            for q in (50, 95, 99)}},
        table(["group", "model", "version"], ["p50", "p95", "p99"]),
        PREDICTIONS + " and status < 400")
    errors = lens(
        "ml-api-error-rate", "Error rate per group and endpoint", "lnsDatatable",
        {"group": top_values("group", missing="no group yet"),
         "endpoint": top_values("endpoint"),
         "requests": metric("count", "Requests"),
         "errors": metric("count", "Errors (status >= 500)", kql="status >= 500")},
        table(["group", "endpoint"], ["requests", "errors"]), REQUEST_EVENTS)
    codes = lens(
        "ml-api-error-codes", "Top error codes per group", "lnsDatatable",
        {"group": top_values("group", missing="no group yet"),
         "code": top_values("error_code", size=10), "count": metric("count", "Errors")},
        table(["group", "code"], ["count"]), REQUEST_EVENTS + " and error_code : *")
    panels = [exposed, share, conversion, mean, latency, errors, codes]
    search = {
        "type": "search", "id": "ml-api-errors",
        "attributes": {"title": "ml_api: errors", "description": "Every request that failed",
                       "columns": ["experiment", "group", "endpoint", "status", "error_code",
                                   "model_name", "model_version"],
                       "sort": [["@timestamp", "desc"]],
                       "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({
                           "query": {"query": REQUEST_EVENTS + " and error_code : *",
                                     "language": "kuery"}, "filter": [],
                           "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"})}},
        "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index",
                        "type": "index-pattern", "id": REQUESTS}],
        "typeMigrationVersion": "8.0.0", "coreMigrationVersion": "8.8.0"}
    return [data_view(REQUESTS), data_view(METRICS), data_view(PARSE_FAILURES), *panels,
            search, dashboard(panels, search)]


def dashboard(panels: list[dict], search: dict) -> dict:
    layout = [(0, 0, 32, 14), (32, 0, 16, 14), (0, 14, 24, 14), (24, 14, 24, 14),
              (0, 28, 24, 12), (24, 28, 24, 12), (0, 40, 24, 12), (24, 40, 24, 12)]
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
            "description": "Pick an experiment: exposures, conversion, latency and errors "
                           "per group, with the experiment's actions as annotations",
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
