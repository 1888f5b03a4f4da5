"""The `membership` console script: serve the API, run projections, and operator tools."""

from __future__ import annotations

import csv
import getpass
import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import click
from tqdm import tqdm

from membership.database import DEFAULT_REQUEST_THREADS, ConfigurationError
from membership.exceptions import MembershipError
from projections.audit import iter_audit
from projections.engine import definitions, parking, retrying, store
from projections.engine.catalog import PROJECTIONS
from projections.engine.outages import is_transient
from projections.engine.rebuild import PARALLEL_MIN_EVENTS, Rebuild, default_workers
from projections.engine.runner import ProjectionRunner
from projections.history import organization_at
from service.bootstrap import Services, build_services
from service.devtools import ensure_demo_organization, mint_token, welcome
from service.preflight import check_database
from service.server import DEFAULT_REQUEST_TIMEOUT_S, GunicornServer
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
    """Serve the HTTP API with gunicorn (see api/server.py).

    On SQLite the projections always run inside the server; on PostgreSQL run
    `membership worker` beside it, or pass --with-worker for a single node.
    """
    settings = load_settings()
    try:
        settings.token_verification()
        settings = replace(settings, database=settings.database.serving(threads))  # pools sized for the threads
    except ConfigurationError as error:
        click.echo(f"membership: configuration error: {error}", err=True)
        sys.exit(2)
    run_projections = with_worker or settings.database.backend == "sqlite"
    services = build_services(settings)  # create every table once, before workers race to
    check_read_models(services)
    try:
        if settings.tokens is not None and settings.tokens.is_development_secret:
            services.runner = ProjectionRunner(services.organizations, services.read_db)
            organization_id = ensure_demo_organization(services)
            click.echo(welcome(settings, organization_id, f"http://{host}:{port}"), err=True)
    finally:
        services.close()
    click.echo(f"membership: serving on http://{host}:{port} ({settings.database.backend})", err=True)
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


# -- projections -------------------------------------------------------------
@main.group()
def projections() -> None:
    """Inspect and rebuild the read models."""


@projections.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def projections_status(as_json: bool) -> None:
    """Each projection's position, lag and state, and the events parked for one organization.

    Exits 1 when a read model is stalled or holds events back."""
    with services() as built:
        latest = built.organizations.recorder.max_notification_id() or 0
        rows = store.status(built.read_db, latest)
        parked = parking.active(built.read_db)
    if as_json:
        generations = [{**vars(row), "updated_at": _iso(row.updated_at), "stalled": row.stalled} for row in rows]
        click.echo(
            json.dumps(
                {"latest": latest, "projections": generations, "parked": [p.as_json() for p in parked]}, indent=2
            )
        )
    else:
        click.echo(f"latest event position: {latest}")
        click.echo(f"{'projection':<12} {'gen':>4} {'state':<9} {'position':>10} {'lag':>8} {'parked':>6}  problem")
        for row in rows:
            problem = row.error or ("stalled: no progress while events wait" if row.stalled else "")
            click.echo(
                f"{row.name:<12} {row.generation:>4} {row.state:<9} {row.position:>10} {row.lag:>8}"
                f" {row.parked:>6}  {problem}"
            )
        _echo_parked(parked)
    if parked or any(row.stalled for row in rows):
        sys.exit(1)


def _echo_parked(parked: list[parking.ParkedEvent]) -> None:
    if not parked:
        return
    click.echo(f"\nparked events ({len(parked)}): each holds back one organization in one read model")
    for event in parked:
        click.echo(
            f"  {event.name} organization {event.organization_id or '?'} (aggregate {event.aggregate_id})"
            f" at position {event.position}: {event.event_type}, {event.attempts} attempts, since"
            f" {event.parked_at.isoformat(timespec='seconds')}\n    {event.error}"
        )
    click.echo("  after a fix: membership projections retry; to give one up: membership projections skip")


@projections.command("retry")
@click.argument("names", nargs=-1)
@click.option("--org", "organization_id", type=click.UUID, help="Only this organization's parked events.")
def projections_retry(names: tuple[str, ...], organization_id: UUID | None) -> None:
    """Apply parked events again (after a fix); an organization whose events all apply is released.

    Exits 1 if any still fails (it stays parked, with the new error)."""
    with services() as built:
        chosen = _parked(built, names, organization_id)
        outcomes = [retrying.retry(built.read_db, built.organizations, parked) for parked in chosen]
    failing = _report(outcomes)
    if failing:
        sys.exit(1)


@projections.command("skip")
@click.argument("name")
@click.option("--org", "organization_id", type=click.UUID, required=True)
@click.option("--position", type=int, required=True, help="The parked event's position (see status).")
@click.option("--reason", required=True, help="Why the event may be left out (recorded in the audit trail).")
@click.option("--operator", default=getpass.getuser, show_default="your user name", help="Who decides.")
def projections_skip(name: str, organization_id: UUID, position: int, reason: str, operator: str) -> None:
    """Give up one parked event for good: NAME then applies the organization's later events without it.

    The skip is recorded in the organization's audit trail (EventSkipped), with the reason."""
    with services() as built:
        parked = [p for p in _parked(built, (name,), organization_id) if p.position == position]
        if not parked:
            click.echo(f"membership: no event of organization {organization_id} is parked in {name!r} at position"
                       f" {position}; see membership projections status", err=True)  # fmt: skip
            sys.exit(1)
        try:
            outcomes = [retrying.skip(built.read_db, built.organizations, p, operator, reason) for p in parked]
        except MembershipError as error:
            click.echo(f"membership: cannot record the skip: {error.message}", err=True)
            sys.exit(1)
    if _report(outcomes):
        sys.exit(1)


def _parked(built: Services, names: tuple[str, ...], organization_id: UUID | None) -> list[parking.ParkedEvent]:
    unknown = sorted(set(names) - set(PROJECTIONS))
    if unknown:
        raise click.BadParameter(f"unknown projection {', '.join(unknown)}; known: {', '.join(PROJECTIONS)}")
    parked = parking.active(built.read_db, str(organization_id) if organization_id else None)
    return [p for p in parked if not names or p.name in names]


def _report(outcomes: list[retrying.RetryOutcome]) -> int:
    """Print each outcome; return how many are still failing."""
    if not outcomes:
        click.echo("nothing is parked")
    for outcome in outcomes:
        parked = outcome.parked
        where = f"{parked.name}: organization {parked.organization_id or '?'} (aggregate {parked.aggregate_id})"
        if outcome.still_failing:
            click.echo(f"{where}: still failing after {outcome.applied} events: {outcome.still_failing}")
        else:
            click.echo(f"{where}: released, {outcome.applied} events applied")
    return sum(1 for outcome in outcomes if outcome.still_failing)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@projections.command("rebuild")
@click.argument("names", nargs=-1)
@click.option("--restart", is_flag=True, help="Discard an interrupted rebuild instead of resuming it.")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(100, 100_000))
@click.option(
    "--grace", default=5.0, show_default=True, type=click.FloatRange(0, 3600),
    help="Seconds the old tables stay after the switch, for readers still using them.",
)  # fmt: skip
@click.option(
    "--workers", default=default_workers(), show_default=True, type=click.IntRange(1, 32),
    help=f"Processes filling the new tables on PostgreSQL (one share of the organizations each), when at least"
    f" {PARALLEL_MIN_EVENTS:,} events are to be read.",
)  # fmt: skip
def projections_rebuild(names: tuple[str, ...], restart: bool, batch_size: int, grace: float, workers: int) -> None:
    """Rebuild NAMES (default: all) from the first event while the API keeps serving."""
    chosen = list(names) or list(PROJECTIONS)
    unknown = sorted(set(chosen) - set(PROJECTIONS))
    if unknown:
        raise click.BadParameter(f"unknown projection {', '.join(unknown)}; known: {', '.join(PROJECTIONS)}")
    with services() as built:
        latest = built.organizations.recorder.max_notification_id() or 0
        rebuild = Rebuild(
            built.organizations, built.read_db, chosen, batch_size, retired_grace_s=grace, database=built.settings.database,
            workers=workers,
        )  # fmt: skip
        start = 0 if restart else rebuild.start_position()
        with tqdm(
            total=latest, initial=start, unit="ev", desc="rebuild " + ",".join(sorted(chosen)), file=sys.stderr
        ) as bar:
            rebuild.on_progress = bar.update
            generations = rebuild.run(restart=restart)
        parked = [p for p in parking.active(built.read_db) if generations.get(p.name) == p.generation]
    click.echo("rebuilt: " + ", ".join(f"{name} (generation {gen})" for name, gen in sorted(generations.items())))
    if parked:
        _echo_parked(parked)
        sys.exit(1)


# -- audit -------------------------------------------------------------------
@main.group()
def audit() -> None:
    """Export and replay an organization's history."""


@audit.command("export")
@click.option("--org", "organization_id", required=True, type=click.UUID)
@click.option("--since", type=Timestamp(), help="Only events at or after this time.")
@click.option("--until", type=Timestamp(), help="Only events before this time.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
def audit_export(organization_id: UUID, since: datetime | None, until: datetime | None, fmt: str) -> None:
    """Stream the organization's audit trail to stdout (constant memory)."""
    with services() as built:
        entries = iter_audit(built.read_db, organization_id, since=since, until=until)
        if fmt == "jsonl":
            for entry in entries:
                click.echo(json.dumps(entry.as_json(), sort_keys=True))
            return
        writer = csv.writer(sys.stdout)
        columns = ["position", "occurredAt", "type", "actorId", "actorEmail", "targetType", "targetId", "targetLabel"]
        writer.writerow([*columns, "details"])
        for entry in entries:
            writer.writerow(
                [
                    entry.position,
                    entry.occurred_at.isoformat(),
                    entry.event_type,
                    entry.actor_id,
                    entry.actor_email,
                    entry.target_type,
                    entry.target_id,
                    entry.target_label,
                    json.dumps(entry.details, sort_keys=True),
                ]
            )


@audit.command("replay")
@click.option("--org", "organization_id", required=True, type=click.UUID)
@click.option("--at", "at", required=True, type=Timestamp(), help="The moment to show (ISO 8601; UTC if no zone).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit_replay(organization_id: UUID, at: datetime, as_json: bool) -> None:
    """Members, roles, pending invitations and links as they were at a moment, from the events."""
    with services() as built:
        past = organization_at(built.organizations, organization_id, at)
    if past is None:
        click.echo(f"membership: organization {organization_id} did not exist at {at.isoformat()}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"at": at.isoformat(), **{k: v for k, v in vars(past).items() if k != "at"}}, indent=2))
        return
    click.echo(f"{past.name} at {at.isoformat()} (after {past.version} events)")
    _table("Members", past.members, ["email", "name", "role", "joinedAt"])
    _table("Roles", past.roles, ["name", "isSystem", "permissions"])
    _table("Pending invitations", past.pending_invitations, ["email", "role", "expiresAt"])
    _table("Invite links", past.invite_links, ["id", "role", "useCount", "maxUses", "expiresAt"])


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    click.echo(f"\n{title} ({len(rows)})")
    if not rows:
        return
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)
