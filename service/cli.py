"""The `membership` console script: serve the API, run the worker, mint development tokens.

The operators' commands (`projections ...`, `audit ...`) are in `service.operations`.
"""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import suppress
from dataclasses import replace
from uuid import UUID

import click

from membership.database import DEFAULT_REQUEST_THREADS, ConfigurationError
from projections.engine.runner import ProjectionRunner
from service.bootstrap import build_services
from service.console import OperatorCommands, check_read_models, load_settings, log, services
from service.operations import audit, projections
from service.privacy_commands import privacy
from service.settings import DEFAULT_REQUEST_TIMEOUT_S


@click.group(cls=OperatorCommands)
def main() -> None:
    """Organization membership service (oCore Team Management)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


# -- serving -----------------------------------------------------------------
@main.command()
@click.option("--host", envvar="MEMBERSHIP_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="MEMBERSHIP_PORT", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", envvar="MEMBERSHIP_WORKERS", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads", envvar="MEMBERSHIP_THREADS", default=DEFAULT_REQUEST_THREADS, show_default=True,
    type=click.IntRange(1, 64), help="Threads answering requests in each process.",
)  # fmt: skip
@click.option(
    "--request-timeout", envvar="MEMBERSHIP_REQUEST_TIMEOUT", default=DEFAULT_REQUEST_TIMEOUT_S, show_default=True,
    type=click.FloatRange(0.5, 300), help="Seconds a client has to send a whole request, else 408.",
)  # fmt: skip
@click.option("--with-worker", is_flag=True, help="Also run the projections in this process (PostgreSQL).")
def serve(host: str, port: int, workers: int, threads: int, request_timeout: float, with_worker: bool) -> None:
    """Serve the HTTP API with gunicorn (see service/server.py).

    On SQLite the projections always run inside the server; on PostgreSQL run
    `membership worker` beside it, or pass --with-worker for a single node.
    """
    settings = load_settings()
    try:
        settings.token_verification()
        settings = replace(settings, database=settings.database.serving(threads))  # pools sized for the threads
        settings = settings.served_at(host, port)  # links and e-mails point where this server listens
    except ConfigurationError as error:
        click.echo(f"membership: configuration error: {error}", err=True)
        sys.exit(2)
    run_projections = with_worker or settings.database.backend == "sqlite"
    services = build_services(settings)  # create every table once, before workers race to
    check_read_models(services)
    # Imported here, not at the top: the worker, the operators' commands and a refused start-up never load
    # PyJWT, Flask or gunicorn.
    from service.devtools import ensure_demo_organization, welcome
    from service.server import GunicornServer

    try:
        if settings.tokens is not None and settings.tokens.is_development_secret:
            services.runner = ProjectionRunner(services.organizations, services.read_db)
            organization_id = ensure_demo_organization(services)
            click.echo(welcome(settings, organization_id, settings.public_url), err=True)
    finally:
        services.close()
    click.echo(f"membership: serving on {settings.public_url} ({settings.database.backend}, listening on {host}:{port})",
               err=True)  # fmt: skip
    options = {"bind": f"{host}:{port}", "workers": workers, "threads": threads}
    GunicornServer(settings, run_projections, options, request_timeout).run()


@main.command()
@click.option(
    "--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000), help="Events per projection batch."
)
@click.option(
    "--job-batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Members per bulk-job batch.",
)
def worker(batch_size: int, job_batch_size: int) -> None:
    """Run the projections, the invitation mailer and bulk jobs until stopped (SIGTERM or Ctrl-C).

    Several workers may run against one database."""
    with services() as built:
        check_read_models(built)
        if not built.settings.public_url_given:
            log.warning("MEMBERSHIP_PUBLIC_URL is not set: e-mailed links point at %s", built.settings.public_url)
        runner = ProjectionRunner(built.organizations, built.read_db, batch_size=batch_size)
        built.start_background_work(job_batch_size)
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
        log.info("worker started: projections %s, the invitation mailer and bulk jobs", ", ".join(runner.names))
        with suppress(KeyboardInterrupt):
            runner.run_forever()


@main.command()
@click.option("--sub", required=True, help="The user id.")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--org", "organization_id", type=click.UUID, help="Sets the org_id claim (the default organization).")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30m, 1h, 7d...")
def token(sub: str, email: str, name: str, organization_id: UUID | None, ttl: str) -> None:
    """Mint a development token signed with MEMBERSHIP_JWT_SECRET (or the generated one in var/)."""
    from service.devtools import mint_token  # PyJWT: only for this command

    settings = load_settings()
    try:
        click.echo(
            mint_token(settings, sub, email, name, str(organization_id) if organization_id else None, _seconds(ttl))
        )
    except ConfigurationError as error:
        click.echo(f"membership: configuration error: {error}", err=True)
        sys.exit(2)


def _seconds(ttl: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(ttl) < 2 or ttl[-1] not in units or not ttl[:-1].isdigit() or int(ttl[:-1]) < 1:
        raise click.BadParameter(f"{ttl!r}: use a number and a unit, like 30m, 1h or 7d", param_hint="--ttl")
    return int(ttl[:-1]) * units[ttl[-1]]


main.add_command(projections)
main.add_command(audit)
main.add_command(privacy)
