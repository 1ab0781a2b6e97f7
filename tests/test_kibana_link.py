"""The link from /dashboard and the results to the Kibana dashboard opens it on that
experiment, from the experiment's start: checked by reading the link back as Kibana does
(URL-decoded rison), for any experiment name."""
import dataclasses
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from ml_api import create_app
from ml_api.http.kibana_link import kibana_dashboard_url
from tests.conftest import ADMIN_TOKEN

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Actor": "analyst"}


def rison(text: str):
    """Decode the rison subset the link uses: objects, !( ) arrays, quoted strings, bare
    words, !t and !f."""
    value, rest = _value(text)
    assert rest == "", rest
    return value


def _value(text: str):
    if text.startswith("!("):
        items, text = [], text[2:]
        while not text.startswith(")"):
            item, text = _value(text)
            items.append(item)
            text = text[1:] if text.startswith(",") else text
        return items, text[1:]
    if text.startswith("("):
        obj, text = {}, text[1:]
        while not text.startswith(")"):
            key, text = _value(text)
            assert text.startswith(":"), text
            obj[key], text = _value(text[1:])
            text = text[1:] if text.startswith(",") else text
        return obj, text[1:]
    if text.startswith("'"):
        out, i = [], 1
        while text[i] != "'":
            if text[i] == "!":
                i += 1
            out.append(text[i])
            i += 1
        return "".join(out), text[i + 1:]
    if text[:2] in ("!t", "!f"):
        return text[:2] == "!t", text[2:]
    end = next((i for i, c in enumerate(text) if c in ":,()"), len(text))
    return text[:end], text[end:]


def read_link(url: str) -> tuple[str, dict, dict]:
    """(the dashboard's path, _g, _a) as Kibana reads them from the address's hash."""
    fragment = urlsplit(url).fragment
    path, query = fragment.split("?", 1)
    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return path, rison(params["_g"]), rison(params["_a"])


@given(name=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s),
       start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_the_link_selects_the_experiment_and_starts_at_its_start(name, start):
    url = kibana_dashboard_url("http://kibana:5601/", name, start.isoformat())
    assert url.startswith("http://kibana:5601/app/dashboards#")
    path, global_state, app_state = read_link(url)
    assert path == "/view/ml-api-overview"
    assert global_state["time"] == {
        "from": start.replace(tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "to": "now"}
    [control] = app_state["controlGroupInput"]["controls"]
    assert control["id"] == "experiment" and control["type"] == "optionsListControl"
    config = control["controlConfig"]
    assert config["selectedOptions"] == [name] and config["singleSelect"] is True
    assert config["fieldName"] == "experiment" and config["dataViewId"] == "ml-api-requests"


# The `_a` state Kibana 8.19 writes for a dashboard with one options-list control, transcribed
# from Kibana's src/platform/plugins/shared/dashboard/public/dashboard_app/url/bwc/
# extract_control_group_state.test.ts (its ">= 8.19 to <9.4 state" case).
KIBANA_819_APP_STATE = {
    "controlGroupInput": {
        "controls": [
            {
                "controlConfig": {
                    "dataViewId": "90943e30-9a47-11e8-b64d-95841ca0b247",
                    "fieldName": "machine.os.keyword",
                    "selectedOptions": ["win 7"],
                },
                "grow": True,
                "type": "optionsListControl",
                "width": "small",
            },
        ],
    },
}
# What a control of ControlGroupSerializedState may carry beside those (Kibana's
# src/platform/plugins/shared/controls/common/control_group/types.ts: `id`, `order`).
CONTROL_KEYS = {"id", "order"}
# What an options list's config may carry beside those (its serialized state: the selector's
# title and single selection).
OPTIONS_LIST_KEYS = {"title", "singleSelect"}


def shape_errors(app_state: dict, reference: dict = KIBANA_819_APP_STATE) -> list[str]:
    """Where `app_state` leaves the shape of Kibana 8.19's own `_a` control state."""
    if set(app_state) != set(reference):
        return [f"top-level keys {sorted(app_state)}, Kibana 8.19 reads {sorted(reference)}"]
    controls = app_state["controlGroupInput"].get("controls")
    if not isinstance(controls, list) or not controls:
        return ["controlGroupInput.controls is not a non-empty list"]
    [model] = reference["controlGroupInput"]["controls"]
    errors = []
    for control in controls:
        if not set(model) <= set(control) <= set(model) | CONTROL_KEYS:
            errors.append(f"control keys {sorted(control)}")
        elif not (set(model["controlConfig"]) <= set(control["controlConfig"])
                  <= set(model["controlConfig"]) | OPTIONS_LIST_KEYS):
            errors.append(f"controlConfig keys {sorted(control['controlConfig'])}")
    return errors


def test_the_link_has_the_control_state_shape_kibana_819_writes():
    """Checked against the shape transcribed from Kibana's own source
    (src/platform/plugins/shared/dashboard/public/dashboard_app/url/bwc/
    extract_control_group_state.test.ts), not against our own decoding."""
    _, _, app_state = read_link(kibana_dashboard_url("http://k", "it's!", "2024-01-02T03:04:05"))
    assert shape_errors(app_state) == []


def test_the_8_16_to_8_18_form_is_not_the_819_shape():
    """The form the link once wrote, which Kibana's tests name the 8.16 to 8.18 one."""
    old = {"controlGroupState": {"initialChildControlState": {"experiment": {
        "type": "optionsListControl", "order": 0, "dataViewId": "ml-api-requests",
        "fieldName": "experiment", "selectedOptions": ["x"]}}}}
    assert shape_errors(old) != []
    flat = {"controlGroupInput": {"controls": [
        {"type": "optionsListControl", "grow": True, "width": "small", "fieldName": "x",
         "dataViewId": "d", "selectedOptions": ["x"]}]}}
    assert shape_errors(flat) != []


def test_an_experiment_never_started_opens_on_the_last_day():
    _, global_state, _ = read_link(kibana_dashboard_url("http://k", "x", None))
    assert global_state["time"] == {"from": "now-24h", "to": "now"}
    assert kibana_dashboard_url("", "x", None) is None


def test_the_control_id_is_the_saved_dashboards_selector():
    import json

    from tests.helpers import ROOT
    objects = [json.loads(line) for line in (ROOT / "kibana" / "ml_api.ndjson").open()]
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    controls = json.loads(dashboard["attributes"]["controlGroupInput"]["panelsJSON"])
    assert list(controls) == ["experiment"]
    assert controls["experiment"]["explicitInput"]["fieldName"] == "experiment"
    assert dashboard["id"] == "ml-api-overview"


def test_results_and_dashboard_link_to_kibana_only_when_it_is_set(embedded_settings):
    plain = create_app(embedded_settings).test_client()
    assert "kibana_url" not in plain.get("/experiments/demo/results", headers=HEADERS).get_json()
    client = create_app(dataclasses.replace(embedded_settings,
                                            kibana_url="http://localhost:5601")).test_client()
    started = client.get("/experiments/demo", headers=HEADERS).get_json()["started_at"]
    link = client.get("/experiments/demo/results", headers=HEADERS).get_json()["kibana_url"]
    _, global_state, app_state = read_link(link)
    assert started and global_state["time"]["from"] == datetime.fromisoformat(started).astimezone(
        timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    [control] = app_state["controlGroupInput"]["controls"]
    assert control["controlConfig"]["selectedOptions"] == ["demo"]
    page = client.get("/dashboard", headers=HEADERS).get_data(as_text=True)
    assert link in page  # what the page's "events in Kibana" link opens


def test_results_with_a_kibana_link_load_the_experiment_once(embedded_settings, monkeypatch):
    from ml_api.experiments.admin import ExperimentAdmin
    client = create_app(dataclasses.replace(embedded_settings,
                                            kibana_url="http://localhost:5601")).test_client()
    loaded = []
    load = ExperimentAdmin._load
    monkeypatch.setattr(ExperimentAdmin, "_load",
                        lambda self, name: loaded.append(name) or load(self, name))
    assert client.get("/experiments/demo/results", headers=HEADERS).status_code == 200
    assert loaded == ["demo"]
