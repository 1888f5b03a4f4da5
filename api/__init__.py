"""HTTP adapter: a thin Flask app over the write side and the read models."""

from __future__ import annotations

import atexit

from flask import Flask

from api.bootstrap import Services, build_services
from api.health import blueprint as health_blueprint
from membership.settings import Settings


def create_app(
    settings: Settings | None = None, *, services: Services | None = None, run_projections: bool = False
) -> Flask:
    """Build the WSGI app. Stores are opened here (after any fork), never at import.

    `run_projections` runs the projection runner in a thread of this process:
    the embedded SQLite set-up, or PostgreSQL with `membership serve --with-worker`.
    """
    app = Flask(__name__)
    if services is None:
        services = build_services(settings or Settings.from_env())
        atexit.register(services.close)
    if run_projections and services.runner is None:
        services.start_projections()
    app.extensions["membership"] = services
    app.register_blueprint(health_blueprint)
    return app
