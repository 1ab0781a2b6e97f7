"""Builds kibana/ml_api.ndjson: the data views, visualizations and dashboard of the stack.

    python kibana/saved_objects.py      # rewrites ml_api.ndjson (a test checks it is current)

The visualizations are Kibana's aggregation-based ("legacy") types and one TSVB chart, whose
saved-object format Kibana 8 still imports and migrates.
"""
from __future__ import annotations

import json
from pathlib import Path

OUTPUT = Path(__file__).with_name("ml_api.ndjson")
REQUESTS, METRICS = "ml-api-requests", "ml-api-metrics"
PARSE_FAILURES = "ml-api-parse-failures"  # lines Logstash could not read as JSON
MIGRATION = {"visualization": "7.10.0"}


def data_view(view_id: str) -> dict:
    return {"type": "index-pattern", "id": view_id,
            "attributes": {"title": f"{view_id}-*", "timeFieldName": "@timestamp"},
            "references": [], "migrationVersion": {"index-pattern": "7.11.0"}}


def visualization(vis_id: str, title: str, vis_type: str, aggs: list, params: dict,
                  query: str = "", view: str | None = REQUESTS) -> dict:
    search = {"query": {"query": query, "language": "kuery"}, "filter": []}
    references = []
    if view:
        search["indexRefName"] = "kibanaSavedObjectMeta.searchSourceJSON.index"
        references = [{"name": search["indexRefName"], "type": "index-pattern", "id": view}]
    state = {"title": title, "type": vis_type, "aggs": aggs, "params": params}
    return {"type": "visualization", "id": vis_id, "migrationVersion": MIGRATION,
            "attributes": {"title": title, "visState": json.dumps(state), "uiStateJSON": "{}",
                           "description": "", "version": 1,
                           "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(search)}},
            "references": references}


def agg(agg_id: str, agg_type: str, schema: str, **params) -> dict:
    return {"id": agg_id, "enabled": True, "type": agg_type, "schema": schema, "params": params}


BAR = {"type": "histogram", "addLegend": True, "legendPosition": "right", "isVislibVis": True,
       "addTooltip": True}
OVER_TIME = agg("2", "date_histogram", "segment", field="@timestamp", interval="auto",
                min_doc_count=1, extended_bounds={})
BY_GROUP = agg("3", "terms", "group", field="group", size=10, order="desc", orderBy="1")


def objects() -> list[dict]:
    traffic = visualization(
        "ml-api-traffic-split", "Requests per group over time (traffic split)", "histogram",
        [agg("1", "count", "metric"), OVER_TIME, BY_GROUP], BAR, query='endpoint : "/predict"')
    latency = visualization(
        "ml-api-latency", "Latency percentiles per group and model version (ms)", "table",
        [agg("1", "percentiles", "metric", field="latency_ms", percents=[50, 95, 99]),
         agg("2", "terms", "bucket", field="group", size=10, order="desc", orderBy="_key"),
         agg("3", "terms", "bucket", field="model_version", size=10, order="desc",
             orderBy="_key")],
        {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False},
        query='endpoint : "/predict"')
    errors = visualization(
        "ml-api-error-rate", "Error rate per group (status >= 500)", "metrics", [], {
            "id": "ml-api-error-rate", "type": "timeseries", "time_field": "@timestamp",
            "index_pattern": f"{REQUESTS}-*", "interval": "auto", "use_kibana_indexes": False,
            "axis_position": "left", "show_legend": 1,
            "series": [{"id": "errors", "color": "#E7664C", "split_mode": "terms",
                        "terms_field": "group", "chart_type": "line", "line_width": 2,
                        "point_size": 1, "fill": 0, "stacked": "none", "formatter": "percent",
                        "label": "error rate",
                        "metrics": [{"id": "ratio", "type": "filter_ratio", "metric_agg": "count",
                                     "numerator": {"query": "status >= 500",
                                                   "language": "kuery"},
                                     "denominator": {"query": "event_type : \"request\"",
                                                     "language": "kuery"}}]}],
        }, view=None)
    conversions = visualization(
        "ml-api-conversions", "Conversions per group over time", "histogram",
        [agg("1", "sum", "metric", field="value"), OVER_TIME, BY_GROUP], BAR,
        query='endpoint : "/feedback" and status : 202 and metric : "conversion" '
              'and not duplicate : true')
    endpoint_latency = visualization(
        "ml-api-endpoint-latency", "p99 latency per endpoint (metric events, ms)", "histogram",
        [agg("1", "max", "metric", field="latency_p99_ms"), OVER_TIME,
         agg("3", "terms", "group", field="endpoint", size=5, order="desc", orderBy="1")],
        BAR, view=METRICS)
    panels = [traffic, latency, errors, conversions, endpoint_latency]
    layout = [(0, 0, 24, 15), (24, 0, 24, 15), (0, 15, 24, 15), (24, 15, 24, 15),
              (0, 30, 48, 12)]
    panels_json = [{"panelIndex": str(i), "gridData": {"x": x, "y": y, "w": w, "h": h,
                                                       "i": str(i)},
                    "version": "7.10.0", "panelRefName": f"panel_{i}", "embeddableConfig": {}}
                   for i, (x, y, w, h) in enumerate(layout)]
    dashboard = {
        "type": "dashboard", "id": "ml-api-overview", "migrationVersion": {"dashboard": "7.9.3"},
        "attributes": {
            "title": "ml_api: A/B overview", "description": "Traffic split, latency, errors and "
            "conversions per group", "panelsJSON": json.dumps(panels_json),
            "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
            "timeRestore": True, "timeFrom": "now-1h", "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 30000}, "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                {"query": {"query": "", "language": "kuery"}, "filter": []})}},
        "references": [{"name": f"panel_{i}", "type": "visualization", "id": p["id"]}
                       for i, p in enumerate(panels)],
    }
    return [data_view(REQUESTS), data_view(METRICS), data_view(PARSE_FAILURES), *panels,
            dashboard]


def render() -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects())


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
