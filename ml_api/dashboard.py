"""GET /dashboard: a results page for every experiment, with charts drawn in the browser from
the same numbers as the results API. No CDN, no external asset: it works offline."""
from __future__ import annotations

from datetime import timedelta

import orjson
from flask import Blueprint, current_app, render_template
from markupsafe import Markup

from .health import percentile_upper_bound
from .storage import utcnow

dashboard = Blueprint("dashboard", __name__)


def latency_by_variant(services, experiment_id: int, hours: float = 1.0) -> dict:
    """Approximate p50/p95/p99 (histogram bucket upper bounds, ms) per variant, last hour."""
    health = services.events.health_since(experiment_id, utcnow() - timedelta(hours=hours))
    return {variant: {"requests": h["requests"],
                      **{f"p{q}": percentile_upper_bound(h["buckets"], q / 100)
                         for q in (50, 95, 99)}}
            for variant, h in health.items()}


def dashboard_data(services) -> list[dict]:
    pages = []
    for experiment in sorted(services.store.load_experiments(), key=lambda e: e.name):
        results = services.admin.results(experiment.name)
        results["latency"] = latency_by_variant(services, experiment.id)
        pages.append(results)
    return pages


@dashboard.get("/dashboard")
def show():
    services = current_app.extensions["ml_api"]
    if not services.settings.dashboard_public:
        from .admin_routes import require_token
        require_token()
    services.health.flush(services.events, utcnow())  # include this worker's latest requests
    data = orjson.dumps(dashboard_data(services), option=orjson.OPT_SERIALIZE_NUMPY)
    # Embedded as JSON in a <script> element: "</" must not close it early.
    return render_template("dashboard.html",
                           data=Markup(data.decode().replace("</", "<\\/")))
