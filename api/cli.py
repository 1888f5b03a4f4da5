"""The `membership` console script: serve the API and run operator tasks."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from gunicorn.app.base import BaseApplication

from api.preflight import check_database
from membership.settings import ConfigurationError, Settings


def load_settings() -> Settings:
    """Settings from the environment, checked against the live database; exits on a bad one."""
    try:
        settings = Settings.from_env()
        check_database(settings.database)
    except ConfigurationError as error:
        click.echo(f"membership: configuration error: {error}", err=True)
        sys.exit(2)
    return settings


@click.group()
def main() -> None:
    """Organization membership service (oCore Team Management)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@main.command()
@click.option("--host", envvar="MEMBERSHIP_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="MEMBERSHIP_PORT", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", envvar="MEMBERSHIP_WORKERS", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API with gunicorn."""
    settings = load_settings()
    click.echo(f"membership: serving on http://{host}:{port} ({settings.database.backend})", err=True)
    options = {"bind": f"{host}:{port}", "workers": workers, "accesslog": "-", "control_socket_disable": True}
    GunicornServer(settings, options).run()


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code; each worker builds its own app after the fork."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from api import create_app

        return create_app(self.settings)
