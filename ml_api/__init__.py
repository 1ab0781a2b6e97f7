"""A/B model-serving API. Gunicorn runs `ml_api:create_app()`."""
from __future__ import annotations

from flask import Flask

from .settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app; connects to the cache and database of `settings` (env by default)."""
    from .admin_routes import admin
    from .dashboard import dashboard
    from .jsonio import register_error_handlers
    from .observability import register_observability
    from .routes import create_api
    from .wiring import build_services

    settings = settings or Settings.from_env()
    settings.check()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    services = build_services(settings)
    services.start()
    app.extensions["ml_api"] = services
    app.register_blueprint(create_api(services))
    app.register_blueprint(admin)
    app.register_blueprint(dashboard)
    register_error_handlers(app)
    register_observability(app, services.request_events)
    return app
