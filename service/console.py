"""What every `membership` command shares: settings, the service's parts, time options, one-line failures."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from membership.database import ConfigurationError
from projections.engine import definitions
from projections.engine.outages import is_transient
from service.bootstrap import Services, build_services
from service.preflight import check_database
from service.settings import Settings

log = logging.getLogger("membership")


def load_settings() -> Settings:
    """Settings from the environment, checked against the live database; exits on a bad one."""
    try:
        settings = Settings.from_env()
        check_database(settings.database)
    except ConfigurationError as error:
        click.echo(f"membership: configuration error: {error}", err=True)
        sys.exit(2)
    return settings


def check_read_models(built: Services) -> None:
    """Refuse to serve on read-model tables the code no longer fits (one line, exit 2)."""
    try:
        definitions.check_startable(built.read_db)
    except definitions.DefinitionChangedError as error:
        built.close()
        click.echo(f"membership: {error}", err=True)
        sys.exit(2)


@contextmanager
def services() -> Iterator[Services]:
    built = build_services(load_settings())
    try:
        yield built
    finally:
        built.close()


def parse_time(value: str) -> datetime:
    """ISO 8601; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time (e.g. 2026-05-01T12:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Timestamp(click.ParamType):
    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        return value if isinstance(value, datetime) else parse_time(value)


class OperatorCommands(click.Group):
    """Any failure of a command ends it with one line on stderr and exit status 1 (never a silent 0)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except BrokenPipeError:  # e.g. `membership audit export ... | head`: the reader had enough
            sys.stderr.close()
            sys.exit(1)
        except Exception as error:
            first_line = (str(error).splitlines() or [""])[0]  # PostgreSQL adds the statement and a caret
            what = "the database is unavailable" if is_transient(error) else f"{type(error).__name__}: {first_line}"
            log.debug("command failed", exc_info=error)
            click.echo(f"membership: {ctx.invoked_subcommand or 'command'} failed: {what}", err=True)
            sys.exit(1)
