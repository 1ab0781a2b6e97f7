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
    control = app_state["controlGroupState"]["initialChildControlState"]["experiment"]
    assert control["selectedOptions"] == [name] and control["singleSelect"] is True
    assert control["fieldName"] == "experiment" and control["dataViewId"] == "ml-api-requests"


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
    control = app_state["controlGroupState"]["initialChildControlState"]["experiment"]
    assert control["selectedOptions"] == ["demo"]
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
