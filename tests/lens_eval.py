"""A small evaluator of the Lens panels in kibana/ml_api.ndjson over a list of events, as
Elasticsearch and Kibana would answer them, for exactly the subset the panels use:

- KQL: `field : "text"`, `field : 5`, `field : true`, `field : *`, `field >= 5` (and >, <,
  <=), joined by and / or / not and parentheses; an empty query matches everything;
- data views: a title pattern over the index each event goes to, a time field (the window
  filters on it; events without it are not in the view), and the runtime fields listed in
  RUNTIME_SCRIPTS;
- buckets: terms (alphabetical, one field or multi-terms, with or without a missing
  bucket) and an `auto` date histogram with empty rows, its interval given by the caller;
- metrics: count, unique_count, sum, percentile, each with an optional per-column filter;
  cumulative_sum along the date histogram, starting at the window's start; a formula that
  is one divide of two columns;
- query annotations, which keep the dashboard's filter (the experiment selection) and the
  panel's query unless they ignore global filters.

Anything else raises Unsupported: a panel the evaluator cannot read cannot be checked.
"""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class Unsupported(Exception):
    """A construct outside the evaluated subset (not an AssertionError: a check that
    fails and a panel that cannot be read are told apart)."""


# --- KQL --------------------------------------------------------------------------------

TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>>=|<=|[:<>()*])|(?P<word>[\w@./-]+))')


def _tokens(text: str) -> list[str]:
    tokens, at = [], 0
    while at < len(text.rstrip()):
        match = TOKEN.match(text, at)
        if not match:
            raise Unsupported(f"KQL: cannot read {text[at:]!r}")
        tokens.append(match.group(match.lastgroup))
        at = match.end()
    return tokens


def kql(text: str):
    """A predicate over one event for a KQL query of the subset."""
    tokens = _tokens(text)
    if not tokens:
        return lambda doc: True
    predicate, rest = _or(tokens)
    if rest:
        raise Unsupported(f"KQL: unexpected {rest[0]!r} in {text!r}")
    return predicate


def _joined(tokens, word: str, operand, both):
    """operand (word operand)*, folded left with `both`."""
    left, tokens = operand(tokens)
    while tokens and tokens[0] == word:
        right, tokens = operand(tokens[1:])
        left = (lambda a, b: lambda d: both(a(d), b(d)))(left, right)
    return left, tokens


def _or(tokens):
    return _joined(tokens, "or", _and, lambda a, b: a or b)


def _and(tokens):
    return _joined(tokens, "and", _not, lambda a, b: a and b)


def _not(tokens):
    if tokens and tokens[0] == "not":
        inner, tokens = _not(tokens[1:])
        return (lambda d: not inner(d)), tokens
    if tokens and tokens[0] == "(":
        inner, tokens = _or(tokens[1:])
        if not tokens or tokens[0] != ")":
            raise Unsupported("KQL: unbalanced parenthesis")
        return inner, tokens[1:]
    return _comparison(tokens)


def _value(token: str):
    if token.startswith('"'):
        return json.loads(token)
    if token in ("true", "false"):
        return token == "true"
    try:
        return float(token)
    except ValueError:
        raise Unsupported(f"KQL: unquoted value {token!r}") from None


def _comparison(tokens):
    if len(tokens) < 3 or not re.fullmatch(r"[A-Za-z_@][\w.]*", tokens[0]):
        raise Unsupported(f"KQL: expected a field comparison at {tokens[:3]}")
    name, op, raw = tokens[:3]
    if op == ":" and raw == "*":
        return (lambda d: d.get(name) is not None), tokens[3:]
    if op not in (":", ">=", "<=", ">", "<"):
        raise Unsupported(f"KQL: operator {op!r}")
    value = _value(raw)
    if op == ":":
        if isinstance(value, bool):
            return (lambda d: d.get(name) is value), tokens[3:]
        return (lambda d: _scalar(d.get(name)) == value), tokens[3:]
    if isinstance(value, (bool, str)):
        raise Unsupported(f"KQL: range on {raw!r}")
    compare = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__, "<": float.__lt__}[op]
    return (lambda d: isinstance(_scalar(d.get(name)), float)
            and compare(_scalar(d.get(name)), value)), tokens[3:]


def _scalar(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return float(value)


# --- data views -------------------------------------------------------------------------

RUNTIME_SCRIPTS = {  # painless source -> what it emits for one event
    "emit(doc['group'].size() == 0 ? 'no group yet' : doc['group'].value)":
        lambda d: "no group yet" if d.get("group") is None else d["group"],
}


def index_of(event: dict) -> str:
    """The index Logstash's pipeline writes `event` to (logstash/pipeline/ml_api.conf)."""
    kind = "ml-api-metrics" if event.get("event_type") == "metric" else "ml-api-requests"
    return f"{kind}-2026.01.01"


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def view_docs(view: dict, events: list[dict], window: tuple[datetime, datetime] | None
              ) -> list[dict]:
    """The events of a data view (its title, its time field in the window), with its
    runtime fields added."""
    attributes = view["attributes"]
    runtime = {}
    for name, spec in json.loads(attributes.get("runtimeFieldMap") or "{}").items():
        if spec.get("type") != "keyword" or spec["script"]["source"] not in RUNTIME_SCRIPTS:
            raise Unsupported(f"runtime field {name}: {spec}")
        runtime[name] = RUNTIME_SCRIPTS[spec["script"]["source"]]
    time_field = attributes["timeFieldName"]
    docs = []
    for event in events:
        if not fnmatch.fnmatch(index_of(event), attributes["title"]) or not event.get(time_field):
            continue
        at = when(event[time_field])
        if window and not window[0] <= at < window[1]:
            continue
        docs.append({**event, **{n: f(event) for n, f in runtime.items()}, "_time": at})
    return docs


# --- Lens -------------------------------------------------------------------------------

BUCKETS, METRICS = {"terms", "date_histogram"}, {"count", "unique_count", "sum", "percentile"}
TERMS_PARAMS = {"size", "orderBy", "orderDirection", "otherBucket", "missingBucket",
                "parentFormat", "secondaryFields"}


@dataclass
class Result:
    """A panel's table (one row per bucket combination, column id -> value, with the
    experiments each row read in `_experiments`) and its annotations' events."""

    rows: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)


def evaluate(vis: dict, events: list[dict], views: dict[str, dict],
             window: tuple[datetime, datetime] | None = None, selection: str | None = None,
             interval: timedelta = timedelta(minutes=1)) -> Result:
    """Evaluate one Lens saved object over `events`, with the dashboard's time `window`
    (None: everything) and the experiment selector on `selection` (None: nothing picked)."""
    state = vis["attributes"]["state"]
    if state.get("filters"):
        raise Unsupported("panel filters")
    if state["query"].get("language") != "kuery":
        raise Unsupported("a query language other than KQL")
    query = kql(state["query"]["query"])
    selected = (lambda d: d.get("experiment") == selection) if selection else (lambda d: True)
    refs = {r["name"]: views[r["id"]] for r in vis["references"]}
    result = Result()
    for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
        view = refs[f"indexpattern-datasource-layer-{layer_id}"]
        docs = [d for d in view_docs(view, events, window) if selected(d) and query(d)]
        result.rows += _table(layer, docs, window, interval)
    for layer in state["visualization"].get("layers", []):
        if layer.get("layerType") != "annotations":
            continue
        view = refs[f"xy-visualization-layer-{layer['layerId']}"]
        keep = ((lambda d: True) if layer["ignoreGlobalFilters"]
                else (lambda d: selected(d) and query(d)))
        for annotation in layer["annotations"]:
            if annotation["type"] != "query" or annotation["key"]["type"] != "point_in_time":
                raise Unsupported(f"annotation {annotation['type']}")
            match = kql(annotation["filter"]["query"])
            result.annotations += [d for d in view_docs(view, events, window)
                                   if keep(d) and match(d) and d.get(annotation["timeField"])]
    return result


def _key(column: dict, doc: dict):
    fields = [column["sourceField"], *column["params"].get("secondaryFields", [])]
    values = tuple(doc.get(f) for f in fields)
    if any(v is None for v in values):
        return None if column["params"]["missingBucket"] and len(fields) == 1 else KeyError
    return values[0] if len(values) == 1 else values


def _check_bucket(column: dict) -> None:
    params = column["params"]
    if column["operationType"] == "terms":
        if set(params) - TERMS_PARAMS or params["otherBucket"] or params["orderBy"]["type"] != \
                "alphabetical":
            raise Unsupported(f"terms params {params}")
    elif params.get("interval") != "auto" or not params.get("includeEmptyRows"):
        raise Unsupported(f"date histogram params {params}")


def _table(layer: dict, docs: list[dict], window, interval: timedelta) -> list[dict]:
    columns = layer["columns"]
    order = layer["columnOrder"]
    for column_id, column in columns.items():
        if column["operationType"] not in BUCKETS | METRICS | {"cumulative_sum", "math",
                                                                "formula"}:
            raise Unsupported(f"operation {column['operationType']}")
    buckets = [c for c in order if columns[c]["isBucketed"]]
    for c in buckets:
        _check_bucket(columns[c])
    terms = [c for c in buckets if columns[c]["operationType"] == "terms"]
    dates = [c for c in buckets if columns[c]["operationType"] == "date_histogram"]
    if len(dates) > 1:
        raise Unsupported("two date histograms")
    groups: dict[tuple, list[dict]] = {}
    for doc in docs:
        key = tuple(_key(columns[c], doc) for c in terms)
        if KeyError not in key:
            groups.setdefault(key, []).append(doc)
    for index, c in enumerate(terms):
        values = {k[index] for k in groups}
        if len(values) > columns[c]["params"]["size"]:
            raise AssertionError(f"terms {c} would hide values: {sorted(map(str, values))}")
    slots = [None]
    if dates:
        start = window[0] if window else min((d["_time"] for d in docs), default=None)
        end = window[1] if window else max((d["_time"] for d in docs), default=start)
        slots = [] if start is None else [start + i * interval for i in
                                          range(int((end - start) / interval) + 1)]
    rows = []
    for key in sorted(groups, key=lambda k: tuple((v is None, str(v)) for v in k)):
        members = groups[key]
        running: dict[str, float] = {}
        key_rows = []
        for slot in slots:
            inside = members if slot is None else [
                d for d in members if slot <= d["_time"] < slot + interval]
            row = {**dict(zip(terms, key)), **({dates[0]: slot} if dates else {})}
            row["_experiments"] = set()
            for column_id in _dependency_order(columns):
                row[column_id] = _value_of(columns, column_id, row, inside, running)
            key_rows.append(row)
        read = set().union(*(r["_experiments"] for r in key_rows))
        for row in key_rows:
            row["_experiments"] = read  # a running value reads the earlier rows too
        rows += key_rows
    return rows


def _dependency_order(columns: dict) -> list[str]:
    done: list[str] = []

    def visit(column_id):
        if column_id in done:
            return
        for reference in columns[column_id].get("references", []):
            if reference not in columns:
                raise Unsupported(f"reference to a missing column {reference}")
            visit(reference)
        done.append(column_id)

    for column_id, column in columns.items():
        if not column["isBucketed"]:
            visit(column_id)
    return done


def _value_of(columns: dict, column_id: str, row: dict, docs: list[dict], running: dict):
    column = columns[column_id]
    operation = column["operationType"]
    if operation in METRICS:
        match = kql(column.get("filter", {}).get("query", ""))
        if column.get("filter", {}).get("language", "kuery") != "kuery":
            raise Unsupported("a column filter in another language than KQL")
        source = column["sourceField"]
        picked = [d for d in docs if match(d)
                  and (source == "___records___" or d.get(source) is not None)]
        row["_experiments"] |= {d.get("experiment") for d in picked}
        if operation == "count":
            return len(picked)
        values = [float(d[source]) for d in picked]
        if not values:
            return None
        if operation == "sum":
            return sum(values)
        if operation == "unique_count":
            return len(set(values))
        return _percentile(sorted(values), column["params"]["percentile"])
    if operation == "cumulative_sum":
        (part,) = column["references"]
        if "date_histogram" not in {c["operationType"] for c in columns.values()}:
            raise Unsupported("a cumulative sum without a date histogram")
        running[column_id] = running.get(column_id, 0.0) + (row[part] or 0.0)
        return running[column_id]
    if operation == "math":
        ast = column["params"]["tinymathAst"]
        if ast.get("type") != "function" or ast.get("name") != "divide" or \
                ast["args"] != column["references"] or len(ast["args"]) != 2:
            raise Unsupported(f"math {ast}")
        top, bottom = (row[a] for a in ast["args"])
        return None if top is None or not bottom else top / bottom
    (math_id,) = column["references"]  # a formula: its text must say what its parts do
    if column["params"]["formula"] != _formula_text(columns, math_id):
        raise Unsupported(f"formula {column['params']['formula']!r} is not its columns")
    return row[math_id]


def _formula_text(columns: dict, column_id: str) -> str:
    column = columns[column_id]
    operation = column["operationType"]
    if operation == "math":
        return " / ".join(_formula_text(columns, a) for a in column["references"])
    if operation == "cumulative_sum":
        return f"cumulative_sum({_formula_text(columns, column['references'][0])})"
    field = "" if operation == "count" else column["sourceField"]
    query = column.get("filter", {}).get("query")
    args = ", ".join(p for p in (field, f"kql='{query}'" if query else "") if p)
    return f"{operation}({args})"


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (what a t-digest gives on few values)."""
    rank = (len(values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)
