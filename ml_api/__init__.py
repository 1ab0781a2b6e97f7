"""A/B model-serving API. Gunicorn runs `ml_api:create_app()`."""
from __future__ import annotations

from flask import Flask

from ml_api.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app; connects to the cache and database of `settings` (env by default)."""
    from ml_api.http.admin import create_admin
    from ml_api.http.api import create_api
    from ml_api.http.dashboard import create_dashboard
    from ml_api.http.jsonio import register_error_handlers
    from ml_api.http.observability import register_observability
    from ml_api.wiring import build_services

    settings = settings or Settings.from_env()
    settings.check()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    services = build_services(settings)
    services.start()
    # Handed to gunicorn's worker_exit (it drains them) and to tests; views get theirs
    # from the blueprint factories below, never from current_app.
    app.extensions["ml_api"] = services
    app.register_blueprint(create_api(services))
    app.register_blueprint(create_admin(services.admin, settings.admin_token,
                                        settings.max_body_bytes, settings.kibana_url))
    app.register_blueprint(create_dashboard(services.store, services.admin, services.traffic,
                                            public=settings.dashboard_is_public,
                                            admin_token=settings.admin_token,
                                            kibana_url=settings.kibana_url))
    register_error_handlers(app)
    register_observability(app, services.request_events)
    return app
