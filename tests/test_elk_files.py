"""The Logstash pipeline, Elasticsearch templates and Kibana saved objects agree with each other
and with the events the service really emits. (Logstash, Elasticsearch and Kibana cannot run
here: these tests check the files, and setup.sh against a local HTTP endpoint.)"""
import fnmatch
import http.server
import json
import re
import subprocess
import threading

import pytest
import yaml

from ml_api import create_app
from tests.conftest import ADMIN_TOKEN
from tests.helpers import FEATURES, ROOT
from tests.telemetry_capture import capture_events

KIBANA = ROOT / "kibana"
LOGSTASH = ROOT / "logstash"
PIPELINE = (LOGSTASH / "pipeline" / "ml_api.conf").read_text()
TEMPLATES = {p.name: json.loads(p.read_text()) for p in (LOGSTASH / "templates").glob("*.json")}
OBJECTS = [json.loads(line) for line in (KIBANA / "ml_api.ndjson").read_text().splitlines()]
BY_ID = {(o["type"], o["id"]): o for o in OBJECTS}
DATA_VIEWS = {o["id"]: o["attributes"]["title"] for o in OBJECTS if o["type"] == "index-pattern"}
RUNTIME = {o["attributes"]["title"]: set(json.loads(o["attributes"]["runtimeFieldMap"]))
           for o in OBJECTS if "runtimeFieldMap" in o.get("attributes", {})}


def template_for(index: str) -> dict:
    matches = [t for t in TEMPLATES.values()
               if any(fnmatch.fnmatch(index, p) for p in t["index_patterns"])]
    assert len(matches) == 1, f"{index} matches {len(matches)} templates"
    return matches[0]


def mapped(template: dict) -> set[str]:
    return set(template["template"]["mappings"]["properties"])


def kql_fields(query: str) -> set[str]:
    return set(re.findall(r"([A-Za-z_@][\w.]*)\s*(?::|>=|<=|>|<)", query))


def test_committed_ndjson_is_what_the_generator_writes():
    import importlib.util
    spec = importlib.util.spec_from_file_location("saved_objects", KIBANA / "saved_objects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (KIBANA / "ml_api.ndjson").read_text() == module.render()


def test_pipeline_indices_match_a_template_and_a_data_view():
    indices = re.findall(r'index => "([^"]+)"', PIPELINE)
    assert len(indices) == 3
    for index in indices:
        concrete = index.replace("%{+YYYY.MM.dd}", "2026.11.22")
        template = template_for(concrete)
        assert any(fnmatch.fnmatch(concrete, title) for title in DATA_VIEWS.values())
        assert template["template"]["mappings"]["properties"]["@timestamp"]["type"] == "date"
    for path in re.findall(r'template => "([^"]+)"', PIPELINE):
        assert path.rsplit("/", 1)[-1] in TEMPLATES
    assert "json_lines" in PIPELINE and "udp" in PIPELINE and '"host"' in PIPELINE


def test_templates_use_keyword_ids_and_float_latencies():
    requests = TEMPLATES["ml-api-requests.json"]["template"]["mappings"]["properties"]
    for field in ("request_id", "experiment", "group", "model_name", "model_version",
                  "uid_hash", "error_code"):
        assert requests[field]["type"] == "keyword"
    for field in ("latency_ms", "model_latency_ms"):
        assert requests[field]["type"] == "float"
    assert "host" not in requests


def view_of(reference: dict) -> str:
    """The title of the data view a reference points to (it must exist in the ndjson)."""
    assert reference["type"] == "index-pattern" and reference["id"] in DATA_VIEWS, reference
    return DATA_VIEWS[reference["id"]]


def lens_fields(vis: dict) -> dict[str, set[str]]:
    """{data view title: the fields the Lens visualization uses on it}, every layer's
    reference checked."""
    state = vis["attributes"]["state"]
    refs = {r["name"]: r for r in vis["references"]}
    used: dict[str, set[str]] = {}
    query_fields = kql_fields(state["query"]["query"])
    for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
        view = view_of(refs[f"indexpattern-datasource-layer-{layer_id}"])
        fields = used.setdefault(view, set()) | query_fields
        assert set(layer["columnOrder"]) == set(layer["columns"])
        for column in layer["columns"].values():
            if column.get("sourceField") not in (None, "___records___"):
                fields.add(column["sourceField"])
            fields.update(column.get("params", {}).get("secondaryFields", []))
            fields |= kql_fields(column.get("filter", {}).get("query", ""))
            for reference in column.get("references", []):  # formula parts are columns
                assert reference in layer["columns"], reference
        used[view] = fields
    for layer in state["visualization"].get("layers", []):
        if layer.get("layerType") == "annotations":
            view = view_of(refs[f"xy-visualization-layer-{layer['layerId']}"])
            for annotation in layer["annotations"]:
                used.setdefault(view, set()).update(
                    {annotation["timeField"], *annotation["extraFields"]},
                    kql_fields(annotation["filter"]["query"]))
    return used


def dashboard_panels() -> list[dict]:
    dashboard = BY_ID[("dashboard", "ml-api-overview")]
    refs = {r["name"]: r for r in dashboard["references"]}
    return [BY_ID[(refs[p["panelRefName"]]["type"], refs[p["panelRefName"]]["id"])]
            for p in json.loads(dashboard["attributes"]["panelsJSON"])]


def test_every_reference_resolves():
    for obj in OBJECTS:
        for reference in obj["references"]:
            assert (reference["type"], reference["id"]) in BY_ID, (obj["id"], reference)
    dashboard = BY_ID[("dashboard", "ml-api-overview")]
    names = {r["name"] for r in dashboard["references"]}
    for panel in json.loads(dashboard["attributes"]["panelsJSON"]):
        assert panel["panelRefName"] in names
    controls = json.loads(dashboard["attributes"]["controlGroupInput"]["panelsJSON"])
    for control_id in controls:
        assert f"controlGroup_{control_id}:optionsListDataView" in names


def test_every_panel_uses_mapped_fields_of_an_existing_data_view():
    panels = dashboard_panels()
    assert len(panels) == 9
    for vis in panels:
        if vis["type"] == "search":
            search = json.loads(vis["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
            (reference,) = vis["references"]
            used = {view_of(reference): set(vis["attributes"]["columns"])
                    | kql_fields(search["query"]["query"])}
        else:
            used = lens_fields(vis)
        for title, fields in used.items():
            unmapped = (fields - mapped(template_for(title.replace("*", "2026.11.22")))
                        - RUNTIME.get(title, set()))
            assert not unmapped, f"{vis['id']} uses unmapped fields {unmapped}"


def test_every_panel_is_split_by_experiment_and_group_under_an_experiment_selector():
    """Same-named groups of two experiments are never summed, selection or not (the meaning
    test checks the numbers; this checks every panel's buckets)."""
    dashboard = BY_ID[("dashboard", "ml-api-overview")]
    controls = json.loads(dashboard["attributes"]["controlGroupInput"]["panelsJSON"])
    selector = {c["explicitInput"]["fieldName"]: c for c in controls.values()}
    assert selector["experiment"]["explicitInput"]["singleSelect"] is True
    control_id = selector["experiment"]["explicitInput"]["id"]
    control_view = next(r["id"] for r in dashboard["references"]
                        if r["name"] == f"controlGroup_{control_id}:optionsListDataView")
    for vis in dashboard_panels():
        if vis["type"] == "search":
            assert "group" in vis["attributes"]["columns"]
        else:
            layers = vis["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
            for layer in layers.values():
                split = set()
                for c in layer["columns"].values():
                    if c["operationType"] == "terms" and c["isBucketed"]:
                        split |= {c["sourceField"], *c["params"].get("secondaryFields", [])}
                assert "experiment" in split and split & {"group", "group_label"}, vis["id"]
            assert vis["attributes"]["state"]["query"]["query"] == ""  # filters per column
        titles = {DATA_VIEWS[r["id"]] for r in vis["references"]}
        assert titles == {DATA_VIEWS[control_view]}, vis["id"]  # the selector filters all


def test_only_lens_panels_remain():
    assert not [o["id"] for o in OBJECTS if o["type"] == "visualization"]
    for vis in (o for o in OBJECTS if o["type"] == "lens"):
        assert vis["attributes"]["visualizationType"] in {"lnsXY", "lnsPie", "lnsDatatable"}
    searches = [o for o in OBJECTS if o["type"] == "search"]
    assert [s["id"] for s in searches] == ["ml-api-errors"]


@pytest.fixture
def emitted(embedded_settings):
    """The events the service really emits for a prediction, a feedback, an error, metrics."""
    app = create_app(embedded_settings)
    events = app.extensions["ml_api"].request_events
    client = app.test_client()
    with capture_events(app) as sent:
        client.post("/predict", json={"uid": "u", "features": FEATURES})
        client.post("/feedback", json={"uid": "u", "event_id": "e1"})
        answer = client.post("/predict", json={"uid": "u", "features": FEATURES}).get_json()
        client.post("/feedback", json={"request_id": answer["request_id"], "label": 1,
                                       "label_token": answer["label_token"]})
        client.post("/predict", json={"uid": "u", "features": [1]})
        token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.post("/experiments/demo/promote", json={"variant": "control"},
                           headers=token).status_code == 200
        assert events.shipper.flush()  # the requests' events (and their latency window)
        events.emit_latency_summary()
    return sent


def test_every_emitted_field_is_mapped(emitted):
    kinds = {e["event_type"] for e in emitted}
    assert kinds == {"request", "metric", "action"}
    for event in emitted:
        index = "ml-api-metrics-x" if event["event_type"] == "metric" else "ml-api-requests-x"
        assert set(event) <= mapped(template_for(index)), set(event) - mapped(
            template_for(index))


class FakeKibana(http.server.BaseHTTPRequestHandler):
    """Kibana's two endpoints that setup.sh uses, answering as Kibana 8 documents them, and
    Elasticsearch's ILM policy endpoint."""
    status_calls = 0
    put_calls = 0
    imports: list[dict] = []
    policies: list[dict] = []

    def do_GET(self):
        type(self).status_calls += 1
        self.send_response(200 if self.status_calls > 2 else 503)  # not ready at first
        self.end_headers()

    def do_PUT(self):  # Elasticsearch's ILM policy API, on the same fake server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).put_calls += 1
        if self.put_calls == 1:  # Elasticsearch still booting: setup.sh tries again
            self.send_response(503)
            self.end_headers()
            return
        type(self).policies.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"acknowledged":true}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).imports.append({"path": self.path, "xsrf": self.headers.get("kbn-xsrf"),
                                   "body": body})
        count = body.count(b'"type": ')
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps({"success": True, "successCount": count},
                                    separators=(",", ":")).encode())

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_setup_script_waits_for_elasticsearch_and_kibana_then_imports_idempotently():
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeKibana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    env = {"KIBANA_URL": url, "ELASTICSEARCH_URL": url, "RETENTION_DAYS": "7",
           "RETENTION_POLICY": str(LOGSTASH / "ilm" / "ml-api-retention.json"),
           "SAVED_OBJECTS": str(KIBANA / "ml_api.ndjson"), "WAIT_SECONDS": "30",
           "PATH": "/usr/bin:/bin"}
    try:
        for _ in range(2):  # running it twice is safe: overwrite=true
            result = subprocess.run(["sh", str(KIBANA / "setup.sh")], env=env,
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
    finally:
        server.shutdown()
    assert FakeKibana.status_calls >= 3 and FakeKibana.put_calls == 3
    imports = [c for c in FakeKibana.imports if c["path"].startswith("/api/saved_objects")]
    defaults = [c for c in FakeKibana.imports if c["path"] == "/api/data_views/default"]
    assert len(imports) == 2 and len(defaults) == 2
    assert json.loads(defaults[0]["body"]) == {"data_view_id": "ml-api-requests", "force": True}
    assert ("index-pattern", "ml-api-requests") in BY_ID
    assert [p["path"] for p in FakeKibana.policies] == ["/_ilm/policy/ml-api-retention"] * 2
    assert FakeKibana.policies[0]["body"]["policy"]["phases"]["delete"]["min_age"] == "7d"
    for call in imports:
        assert call["path"] == "/api/saved_objects/_import?overwrite=true"
        assert call["xsrf"] == "true"
        assert (KIBANA / "ml_api.ndjson").read_bytes() in call["body"]


def test_lines_that_are_not_json_go_to_their_own_mapped_index():
    route = re.search(r'if "_jsonparsefailure" in \[tags\] \{(.*?)\n  \}', PIPELINE, re.S)
    assert route, "parse failures are not routed"
    [index] = re.findall(r'index => "([^"]+)"', route.group(1))
    template = template_for(index.replace("%{+YYYY.MM.dd}", "2026.11.22"))
    assert {"@timestamp", "message", "tags"} <= mapped(template)


def test_every_index_is_deleted_after_the_retention_and_setup_installs_the_policy():
    policy = json.loads((LOGSTASH / "ilm" / "ml-api-retention.json").read_text())
    assert policy["policy"]["phases"]["delete"]["min_age"] == "${RETENTION_DAYS}d"
    for name, template in TEMPLATES.items():
        assert template["template"]["settings"]["index.lifecycle.name"] == "ml-api-retention", name
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    setup = compose["services"]["kibana-setup"]
    assert "./logstash/ilm:/ilm:ro" in setup["volumes"]
    assert setup["environment"]["RETENTION_POLICY"] == "/ilm/ml-api-retention.json"


def test_logstash_keeps_accepted_events_on_a_volume_through_restarts():
    settings = yaml.safe_load((LOGSTASH / "config" / "logstash.yml").read_text())
    assert settings["queue.type"] == "persisted" and settings["dead_letter_queue.enable"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["logstash"]["volumes"]
    data = [v for v in volumes if v.split(":")[1] == "/usr/share/logstash/data"]
    assert data and data[0].split(":")[0] in compose["volumes"]  # named: survives a recreate


def test_feedback_events_say_how_the_uids_conversion_changed(embedded_settings):
    """Converting uids per group are the running sum of conversion_change: +1 when a uid's
    total becomes positive, -1 when a refund brings it back to 0."""
    app = create_app(embedded_settings)
    client = app.test_client()
    with capture_events(app) as sent:
        client.post("/predict", json={"uid": "buyer", "features": FEATURES})
        for value in (5, 3, -8, 0):
            assert client.post("/feedback", json={"uid": "buyer", "value": value}
                               ).status_code == 202
    feedback = [e for e in sent if e.get("endpoint") == "/feedback"]
    assert [e["conversion_change"] for e in feedback] == [1, 0, -1, 0]


def test_a_slow_first_kibana_boot_still_gets_its_saved_objects():
    """Failed health checks during Kibana's first boot do not count (start_period), and the
    setup is started with Kibana and started again until it succeeds."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    health = compose["services"]["kibana"]["healthcheck"]
    assert health["start_period"] == "10m"
    setup = compose["services"]["kibana-setup"]
    assert setup["restart"] == "on-failure"
    assert setup["depends_on"]["kibana"]["condition"] == "service_started"


def test_logstash_settings_avoid_its_deprecation_warnings():
    settings = yaml.safe_load((LOGSTASH / "config" / "logstash.yml").read_text())
    assert "http.host" not in settings and settings["api.http.host"] == "0.0.0.0"
    tcp = re.search(r"tcp \{(.*?)\n  \}", PIPELINE, re.S).group(1)
    assert re.search(r"codec => json_lines \{ decode_size_limit_bytes => \d+ \}", tcp)


def test_outcome_events_carry_the_exposure_time_and_the_metrics_role(embedded_settings):
    """Kibana counts rates by cohort and on the experiment's own metric: an outcome event
    says when its consumer was first exposed, and whether its metric is the primary one."""
    app = create_app(embedded_settings)
    client = app.test_client()
    with capture_events(app) as sent:
        client.post("/predict", json={"uid": "buyer", "features": FEATURES})
        client.post("/predict", json={"uid": "buyer", "features": FEATURES})
        for metric in ("conversion", "clicks"):
            assert client.post("/feedback", json={"uid": "buyer", "metric": metric,
                                                  "value": 1}).status_code == 202
    first, again, primary, other = [e for e in sent if e.get("event_type") == "request"]
    assert first["first_exposure"] is True and first["exposed_at"] == first["@timestamp"]
    assert "exposed_at" not in again
    assert (primary["metric_role"], other["metric_role"]) == ("primary", "other")
    # The database's exposure time: written while the first request was being answered.
    assert primary["exposed_at"] == other["exposed_at"] <= first["@timestamp"]
