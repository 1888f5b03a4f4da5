"""HTTP adapter: a thin Flask app over the `Organizations` application."""

from __future__ import annotations

from flask import Flask

from api.health import blueprint as health_blueprint
from membership import Organizations
from membership.settings import Settings


def create_app(settings: Settings | None = None, *, organizations: Organizations | None = None) -> Flask:
    """Build the WSGI app; the application is constructed here (after any fork), never at import."""
    app = Flask(__name__)
    settings = settings or Settings.from_env()
    app.extensions["membership"] = organizations or Organizations.from_settings(settings)
    app.register_blueprint(health_blueprint)
    return app
