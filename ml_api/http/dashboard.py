"""GET /dashboard: a results page for every experiment, with charts drawn in the browser from
the same numbers as the results API. No CDN, no external asset: it works offline."""
from __future__ import annotations

from datetime import timedelta

import orjson
from flask import Blueprint, render_template
from markupsafe import Markup

from ml_api.experiments.admin import ExperimentAdmin
from ml_api.experiments.traffic import TrafficRecorder, percentile_upper_bound
from ml_api.http.admin import check_admin_token
from ml_api.http.kibana_link import kibana_dashboard_url
from ml_api.records.engine import utcnow
from ml_api.records.experiment_store import ExperimentStore


def latency_by_variant(traffic: TrafficRecorder, experiment_id: int,
                       hours: float = 1.0) -> dict:
    """Requests, errors and approximate p50/p95/p99 (histogram bucket upper bounds, ms) per
    variant, last hour: the guardrails a canary watches."""
    recent = traffic.since(experiment_id, utcnow() - timedelta(hours=hours))
    return {variant: {"requests": h["requests"], "errors": h["errors"],
                      "error_rate": h["errors"] / h["requests"] if h["requests"] else None,
                      **{f"p{q}": percentile_upper_bound(h["buckets"], q / 100)
                         for q in (50, 95, 99)}}
            for variant, h in recent.items()}


def dashboard_data(store: ExperimentStore, admin: ExperimentAdmin,
                   traffic: TrafficRecorder, kibana_url: str = "") -> list[dict]:
    """Each experiment's results, with its recent latency per variant and its Kibana link,
    sorted by name."""
    pages = []
    for experiment in sorted(store.load_experiments(), key=lambda e: e.name):
        results = admin.results(experiment.name)
        results["latency"] = latency_by_variant(traffic, experiment.id)
        results["history"] = admin.history(experiment.name)
        since = experiment.started_at
        results["kibana_url"] = kibana_dashboard_url(
            kibana_url, experiment.name, since.isoformat() if since else None)
        pages.append(results)
    return pages


def create_dashboard(store: ExperimentStore, admin: ExperimentAdmin, traffic: TrafficRecorder,
                     *, public: bool, admin_token: str, kibana_url: str = "") -> Blueprint:
    """The results page; behind the admin token unless `public`."""
    dashboard = Blueprint("dashboard", __name__, template_folder="templates")

    @dashboard.get("/dashboard")
    def show():
        if not public:
            check_admin_token(admin_token, browser=True)
        traffic.flush(utcnow())  # include this worker's latest requests
        data = orjson.dumps(dashboard_data(store, admin, traffic, kibana_url),
                            option=orjson.OPT_SERIALIZE_NUMPY)
        # Embedded as JSON in a <script> element: "</" must not close it early.
        return render_template("dashboard.html",
                               data=Markup(data.decode().replace("</", "<\\/")))

    return dashboard
