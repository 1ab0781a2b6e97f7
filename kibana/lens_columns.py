"""Lens columns and layers in Kibana 8's form-based saved-object format, for saved_objects.py.

Only what the dashboard uses, and so only what tests/lens_eval.py evaluates: terms (one
field, or several as multi-terms), date histograms, count / unique count / sum / percentile
with a per-column KQL filter, and formulas built of those with cumulative sums and a
division.
"""
from __future__ import annotations

LAYER = "data"


def over_time(field: str) -> dict:
    """A date histogram on `field` (the data view's time field)."""
    return {"label": field, "dataType": "date", "operationType": "date_histogram",
            "sourceField": field, "isBucketed": True, "scale": "interval",
            "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False}}


def top_values(field: str, *also: str, size: int = 20) -> dict:
    """Terms on `field` (and, as one multi-terms bucket, on `also`), alphabetical."""
    label = f"Top values of {field}" + (f" + {len(also)} other" if also else "")
    params = {"size": size, "orderBy": {"type": "alphabetical", "fallback": False},
              "orderDirection": "asc", "otherBucket": False, "missingBucket": False,
              "parentFormat": {"id": "multi_terms" if also else "terms"}}
    if also:
        params["secondaryFields"] = list(also)
    return {"label": label, "dataType": "string", "operationType": "terms",
            "sourceField": field, "isBucketed": True, "scale": "ordinal", "params": params}


def metric(operation: str, label: str, field: str = "___records___", kql: str | None = None,
           **params) -> dict:
    """A metric column; `kql` is its own filter (a per-column filter: the dashboard's
    filters and the annotation layers are not touched by it)."""
    column = {"label": label, "customLabel": True, "dataType": "number",
              "operationType": operation, "sourceField": field, "isBucketed": False,
              "scale": "ratio", "params": {"emptyAsNull": operation != "count", **params}}
    if kql:
        column["filter"] = {"query": kql, "language": "kuery"}
    return column


def formula_text(column: dict) -> str:
    field = "" if column["operationType"] == "count" else column["sourceField"]
    kql = column.get("filter", {}).get("query")
    args = ", ".join(part for part in (field, f"kql='{kql}'" if kql else "") if part)
    return f"{column['operationType']}({args})"


def ratio(column_id: str, label: str, numerator: dict, denominator: dict,
          running: bool) -> dict[str, dict]:
    """A formula column, numerator / denominator, or with `running` cumulative_sum(numerator)
    / cumulative_sum(denominator), with the columns Lens keeps for it: its parts, their
    running sums, the division."""
    columns, quotient = {}, []
    for index, part in enumerate((numerator, denominator)):
        part_id = f"{column_id}X{len(columns)}"
        columns[part_id] = {**part, "label": f"Part of {label}", "customLabel": True}
        if running:
            running_id = f"{column_id}X{len(columns)}"
            columns[running_id] = {"label": f"Part of {label}", "customLabel": True,
                                   "dataType": "number", "operationType": "cumulative_sum",
                                   "isBucketed": False, "scale": "ratio",
                                   "references": [part_id]}
            part_id = running_id
        quotient.append(part_id)
    texts = [formula_text(p) for p in (numerator, denominator)]
    if running:
        texts = [f"cumulative_sum({t})" for t in texts]
    formula = " / ".join(texts)
    math_id = f"{column_id}X{len(columns)}"
    columns[math_id] = {
        "label": f"Part of {label}", "customLabel": True, "dataType": "number",
        "operationType": "math", "isBucketed": False, "scale": "ratio", "references": quotient,
        "params": {"tinymathAst": {"type": "function", "name": "divide", "args": quotient,
                                   "location": {"min": 0, "max": len(formula)},
                                   "text": formula}}}
    columns[column_id] = {"label": label, "customLabel": True, "dataType": "number",
                          "operationType": "formula", "isBucketed": False, "scale": "ratio",
                          "references": [math_id],
                          "params": {"formula": formula, "isFormulaBroken": False}}
    return columns


def xy(series: str, x: str, accessors: list[str], split: str | None) -> dict:
    layer = {"layerId": LAYER, "layerType": "data", "seriesType": series, "xAccessor": x,
             "accessors": accessors}
    if split:
        layer["splitAccessor"] = split
    return {"legend": {"isVisible": True, "position": "right"}, "valueLabels": "hide",
            "preferredSeriesType": series, "layers": [layer]}


def table(rows: list[str], metrics: list[str]) -> dict:
    return {"layerId": LAYER, "layerType": "data",
            "columns": [{"columnId": c} for c in rows + metrics]}


def action_annotations(layer_id: str) -> dict:
    """The experiment actions as point annotations. They keep the dashboard's filters (the
    experiment selector) and nothing else: panels filter per column, not by query."""
    return {"layerId": layer_id, "layerType": "annotations", "ignoreGlobalFilters": False,
            "annotations": [{
                "type": "query", "id": "experiment-actions", "label": "Experiment actions",
                "key": {"type": "point_in_time"}, "timeField": "@timestamp",
                "filter": {"type": "kibana_query", "query": 'event_type : "action"',
                           "language": "kuery"},
                "extraFields": ["action", "actor", "reason"], "icon": "triangle",
                "color": "#E7664C", "isHidden": False}]}
