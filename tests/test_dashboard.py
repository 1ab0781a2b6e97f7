"""The built-in results page, rendered by headless Chromium, shows the results API's numbers."""
import base64
import html.parser

import pytest
import requests

from ml_api.serving.training import demo_dataset
from tests.helpers import FEATURES, ROOT, Gunicorn, headless, settings_env

OUTPUT = ROOT / "test-output"
LABELLED = demo_dataset()  # features and true labels


class Elements(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.slow
def test_dashboard_renders_the_results_in_chromium(embedded_settings, admin_headers, tmp_path):
    env = {**settings_env(embedded_settings), "DASHBOARD_PUBLIC": "true"}  # Chromium: no token
    with Gunicorn(env, log_path=tmp_path / "g.log") as server:
        # an experiment that declares a covariate, a quarter of its uids sending none
        assert requests.post(f"{server.url}/experiments", headers=admin_headers, json={
            "name": "revenue", "cuped": True, "metric": "revenue", "metric_type": "mean",
            "mde": 2.0, "variants": [{"name": "control", "model": "logreg@1"},
                                     {"name": "variation", "model": "gboost@1"}]}).ok
        requests.post(f"{server.url}/experiments/revenue/start", headers=admin_headers)
        for i in range(80):
            covariate = float(i % 9)
            requests.post(f"{server.url}/predict", json={
                "uid": f"r{i}", "experiment": "revenue", "features": FEATURES,
                **({"covariate": covariate} if i % 4 else {})})
            requests.post(f"{server.url}/feedback", json={
                "uid": f"r{i}", "experiment": "revenue", "metric": "revenue",
                "value": 1 + covariate + (i % 5)})
        cuped = requests.get(f"{server.url}/experiments/revenue/results",
                             headers=admin_headers).json()
        for i in range(120):
            uid = f"d{i}"
            answer = requests.post(f"{server.url}/predict", json={
                "uid": uid, "features": [float(v) for v in LABELLED[0][i]]}).json()
            if i % 4 == 0:
                requests.post(f"{server.url}/feedback", json={"uid": uid})
            requests.post(f"{server.url}/feedback", json={  # the prediction's true label
                "request_id": answer["request_id"], "label": int(LABELLED[1][i]),
                "label_token": answer["label_token"]})
        api = requests.get(f"{server.url}/experiments/demo/results", headers=admin_headers).json()
        dom = headless(f"{server.url}/dashboard", tmp_path / "profile", "--dump-dom")
        OUTPUT.mkdir(exist_ok=True)
        shot = headless(f"{server.url}/dashboard", tmp_path / "profile2",
                        f"--screenshot={OUTPUT / 'dashboard.png'}", "--window-size=1280,1100")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = Elements()
    parser.feed(dom.stdout)
    body = next(attrs for tag, attrs in parser.found if tag == "body")
    assert body.get("data-rendered") == "true"  # the page's script ran to the end
    bars = {(a["data-chart"] if tag == "svg" else None) for tag, a in parser.found
            if tag == "svg"}
    assert {"traffic", "conversion", "latency"} <= bars
    rects = [a for tag, a in parser.found if tag == "rect"]
    by_variant = {v["name"]: v for v in api["variants"]}
    traffic = rects[:len(by_variant)]
    assert {r["data-variant"]: int(r["data-value"]) for r in traffic} == \
        {name: v["exposures"] for name, v in by_variant.items()}
    assert sum(int(r["data-value"]) for r in traffic) == 120
    conversion = rects[len(by_variant):2 * len(by_variant)]
    for r in conversion:
        assert float(r["data-value"]) == pytest.approx(by_variant[r["data-variant"]]
                                                       ["conversion_rate"])
    whiskers = [a for tag, a in parser.found if tag == "line" and "data-variant" in a]
    for line in whiskers:
        low, high = by_variant[line["data-variant"]]["conversion_rate_ci"]
        assert (float(line["data-low"]), float(line["data-high"])) == pytest.approx((low, high))
    text = "".join(parser.text)
    assert api["decision"]["message"] in text
    # sample-size progress, and the sample-ratio check with observed against expected shares
    progress = next(a for tag, a in parser.found if "progress" in a.get("class", ""))
    if api["sample_size"]["progress"] is None:
        assert progress["data-progress"] == "" and "not known yet" in text
    else:
        assert float(progress["data-progress"]) == pytest.approx(api["sample_size"]["progress"])
        assert f"of {api['sample_size']['per_variant']} per variant" in text
    # the running values decide, beside this look's p-value
    running = {(a["data-experiment"], a["data-variant"]): a for tag, a in parser.found
               if tag == "tr" and "data-running-p" in a}
    assert len(running) == 2
    for results in (api, cuped):
        c = results["comparisons"][0]
        shown = running[results["experiment"], c["variant"]]["data-running-p"]
        if c["running"] is None:  # no look stored yet (no supervisor here): none shown
            assert shown == ""
        else:
            assert float(shown) == pytest.approx(c["running"]["p_value_adjusted"])
    # CUPED-adjusted progress: the unadjusted size over the observed variance reduction
    size = cuped["sample_size"]
    assert size["variance_reduction_factor"] > 1
    shown = [a for tag, a in parser.found if a.get("data-cuped")]
    assert [float(a["data-cuped"]) for a in shown] == pytest.approx(
        [size["variance_reduction_factor"]])
    assert (f"of {size['per_variant']} per variant" in text
            and f"CUPED-adjusted: {size['unadjusted_per_variant']} / " in text)
    srm = next(a for tag, a in parser.found if tag == "table" and a.get("class") == "srm")
    assert float(srm["data-p-value"]) == pytest.approx(api["srm"]["p_value"])
    assert f"p = {api['srm']['p_value']:.4f}" in text
    for name, variant in by_variant.items():
        assert f"{100 * variant['exposures'] / 120:.1f}%" in text
    # guardrails: every variant's requests answered without an error in the last hour
    guards = {a["data-variant"]: a for tag, a in parser.found
              if tag == "tr" and "data-error-rate" in a}
    assert set(guards) == set(by_variant)
    counted = [a["data-error-rate"] for a in guards.values() if a["data-error-rate"]]
    assert counted and all(float(rate) == 0 for rate in counted)  # this worker's, at least
    # model quality from the labels: each variant's log-loss as the results give it
    quality = {a["data-variant"]: a for tag, a in parser.found
               if tag == "tr" and "data-log-loss" in a}
    assert set(quality) == set(api["model_quality"]["variants"]) == set(by_variant)
    for name, row in quality.items():
        assert float(row["data-log-loss"]) == pytest.approx(
            api["model_quality"]["variants"][name]["log_loss"])
    assert "log-loss vs control" in text
    assert shot.returncode == 0 and (OUTPUT / "dashboard.png").stat().st_size > 10_000


@pytest.mark.slow
def test_effect_over_time_narrows_as_a_known_effect_accumulates(embedded_settings, tmp_path):
    """Six minutes of an experiment whose variation converts at 30% against the control's
    10%: the supervisor snapshots the counters each minute, and the page draws the lift
    with an always-valid interval that narrows and ends around the true +0.2."""
    from datetime import timedelta

    import numpy as np

    from ml_api import create_app
    from ml_api.experiments.supervisor import ExperimentSupervisor
    from ml_api.records.engine import utcnow
    from ml_api.records.snapshots import SnapshotStore
    from ml_api.validation import FeedbackRequest, PredictRequest

    services = create_app(embedded_settings).extensions["ml_api"]
    now = [utcnow()]
    supervisor = ExperimentSupervisor(services.store, services.exposures, services.admin,
                                      services.traffic, lambda: now[0],
                                      snapshots=SnapshotStore(services.store.engine))
    rng = np.random.default_rng(11)
    # beside it, a revenue experiment that declares a covariate, 30% of its uids sending none
    services.admin.create({"name": "revenue", "cuped": True, "metric": "revenue",
                           "metric_type": "mean", "mde": 0.5, "variants": [
                               {"name": "control", "model": "logreg@1"},
                               {"name": "variation", "model": "gboost@1"}]}, "t")
    services.admin.transition("revenue", "start", "t")
    for minute in range(6):
        for i in range(200):
            uid = f"m{minute}-{i}"
            group = services.prediction.predict(PredictRequest(uid, FEATURES, None)).group
            if rng.random() < (0.10 if group == "control" else 0.30):
                services.outcomes.record(FeedbackRequest(uid, None, "conversion", 1, None))
            history_x = float(rng.normal(10, 2))
            sent = history_x if rng.random() < 0.7 else None
            group = services.prediction.predict(
                PredictRequest(uid, FEATURES, "revenue", sent)).group
            value = history_x + rng.normal(0, 1.5) + (0.4 if group == "variation" else 0.0)
            services.outcomes.record(FeedbackRequest(uid, "revenue", "revenue", value, None))
        supervisor.tick()
        now[0] += timedelta(minutes=1)
    history = services.admin.history("demo")
    assert len(history) == 6 and [p["variant"] for p in history] == ["variation"] * 6

    env = {**settings_env(embedded_settings), "DASHBOARD_PUBLIC": "true"}
    with Gunicorn(env, log_path=tmp_path / "g.log") as server:
        dom = headless(f"{server.url}/dashboard", tmp_path / "profile", "--dump-dom")
        OUTPUT.mkdir(exist_ok=True)
        shot = headless(f"{server.url}/dashboard", tmp_path / "profile2",
                        f"--screenshot={OUTPUT / 'dashboard-effect.png'}",
                        "--window-size=1280,1900")
    parser = Elements()
    parser.feed(dom.stdout)
    assert any(tag == "svg" and a.get("data-chart") == "effect" for tag, a in parser.found)
    drawn = [a for tag, a in parser.found if tag == "circle" and a.get("data-variant")]
    assert len(drawn) == 12  # six looks of each experiment, demo's first (pages by name)
    drawn = drawn[:6]
    assert [float(a["data-estimate"]) for a in drawn] == pytest.approx(
        [p["estimate"] for p in history])
    widths = [float(a["data-high"]) - float(a["data-low"]) for a in drawn]
    assert all(later < earlier for earlier, later in zip(widths, widths[1:]))
    low, high = float(drawn[-1]["data-low"]), float(drawn[-1]["data-high"])
    assert low < 0.2 < high and low > 0  # covers the true effect, and excludes no effect
    # the same page's sample-size progress and sample-ratio check, as the results API says
    results = services.admin.results("demo")
    progress = next(a for tag, a in parser.found if "progress" in a.get("class", ""))
    assert float(progress["data-progress"]) == pytest.approx(results["sample_size"]["progress"])
    srm = next(a for tag, a in parser.found if tag == "table" and a.get("class") == "srm")
    assert float(srm["data-p-value"]) == pytest.approx(results["srm"]["p_value"])
    assert results["decision"]["winner"] == "variation"
    # the revenue experiment's progress, CUPED-adjusted, and its running values over 6 looks
    revenue = services.admin.results("revenue")
    shown = [a for tag, a in parser.found if a.get("data-cuped")]
    assert [float(a["data-cuped"]) for a in shown] == pytest.approx(
        [revenue["sample_size"]["variance_reduction_factor"]])
    assert revenue["sample_size"]["variance_reduction_factor"] > 1.5
    assert revenue["comparisons"][0]["running"]["looks"] == 6  # the six stored looks
    assert shot.returncode == 0


@pytest.mark.parametrize("environment,public,status", [
    ({}, None, 401),                                  # production by default: token needed
    ({"ml_api_env": "development"}, None, 200),       # open while developing
    ({"ml_api_env": "development"}, False, 401),
    ({}, True, 200),
])
def test_the_results_page_needs_the_token_outside_development(embedded_settings, environment,
                                                              public, status):
    from ml_api import create_app

    settings = embedded_settings.with_overrides(dashboard_public=public, **environment)
    client = create_app(settings).test_client()
    response = client.get("/dashboard")
    assert response.status_code == status
    if status == 401:  # a browser asks for the token itself, then sends it as Basic
        assert response.json["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        token = embedded_settings.admin_token
        basic = base64.b64encode(f"analyst:{token}".encode()).decode()
        assert client.get("/dashboard", headers={"Authorization": f"Basic {basic}"}
                          ).status_code == 200
        assert client.get("/dashboard", headers={"Authorization": f"Bearer {token}"}
                          ).status_code == 200
        wrong = base64.b64encode(b"analyst:wrong").decode()
        assert client.get("/dashboard", headers={"Authorization": f"Basic {wrong}"}
                          ).status_code == 401
        assert client.get("/dashboard", headers={"Authorization": "Basic %%%"}
                          ).status_code == 401
