"""Operators' commands: `membership projections status|retry|skip|rebuild` and `membership audit export|replay`."""

from __future__ import annotations

import csv
import dataclasses
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import click
from tqdm import tqdm

from membership.exceptions import MembershipError
from membership.permissions import all_permissions
from projections import access
from projections.audit import iter_audit
from projections.engine import parking, retrying, store, tracking
from projections.engine.catalog import PROJECTIONS
from projections.engine.rebuild import PARALLEL_MIN_EVENTS, Progress, Rebuild, default_workers
from projections.exports import spreadsheet_cell
from projections.history import organization_at
from service.bootstrap import Services
from service.console import Timestamp, services


# -- projections -------------------------------------------------------------
@click.group()
def projections() -> None:
    """Inspect and rebuild the read models."""


@projections.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def projections_status(as_json: bool) -> None:
    """Each projection's position, lag and state, and the events parked for one organization.

    A generation being filled in parallel shows its slowest share's position, then each share's progress.

    Exits 1 when a read model is stalled or holds events back."""
    with services() as built:
        latest = built.organizations.recorder.max_notification_id() or 0
        rows = store.status(built.read_db, latest)
        with built.read_db.snapshot() as cursor:
            shares = tracking.all_shares(built.read_db, cursor)
        parked = parking.active(built.read_db)
    rows = [_filled_so_far(row, shares.get((row.name, row.generation), []), latest) for row in rows]
    if as_json:
        generations = [
            {
                **vars(row),
                "updated_at": _iso(row.updated_at),
                "stalled": row.stalled,
                "shares": [_share_json(share) for share in shares.get((row.name, row.generation), [])],
            }
            for row in rows
        ]
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
            for share in shares.get((row.name, row.generation), []):
                click.echo(f"{'':<12}   share {share.part + 1}/{share.parts}: {_share_line(share)}")
        _echo_parked(parked)
    if parked or any(row.stalled for row in rows):
        sys.exit(1)


def _filled_so_far(
    row: store.ProjectionStatus, shares: list[tracking.ShareProgress], latest: int
) -> store.ProjectionStatus:
    """A generation filled in parallel keeps its own position until the fill ends: show its slowest share's."""
    if not shares:
        return row
    position = min(share.position for share in shares)
    return dataclasses.replace(row, position=position, lag=max(latest - position, 0))


def _share_json(share: tracking.ShareProgress) -> dict[str, Any]:
    percent = share.percent
    return {
        "part": share.part,
        "parts": share.parts,
        "position": share.position,
        "target": share.target,
        "events": share.events,
        "applied": share.applied,
        "percent": None if percent is None else round(percent, 1),
    }


def _share_line(share: tracking.ShareProgress) -> str:
    """'position 41200 of 60000, 12,000 of 17,000 events (70 %)'."""
    line = f"position {share.position}" + ("" if share.target is None else f" of {share.target}")
    if share.events is not None and share.percent is not None:
        line += f", {min(share.applied, share.events):,} of {share.events:,} events ({share.percent:.0f} %)"
    return line


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
        plan = Progress(0, latest) if restart else rebuild.progress()
        with tqdm(
            total=plan.total, initial=plan.done, unit="ev", desc="rebuild " + ",".join(sorted(chosen)), file=sys.stderr
        ) as bar:
            rebuild.on_plan = lambda progress: _rebase(bar, progress)
            rebuild.on_progress = lambda count: _advance(bar, count)
            generations = rebuild.run(restart=restart)
        parked = [p for p in parking.active(built.read_db) if generations.get(p.name) == p.generation]
    click.echo("rebuilt: " + ", ".join(f"{name} (generation {gen})" for name, gen in sorted(generations.items())))
    if parked:
        _echo_parked(parked)
        sys.exit(1)


def _rebase(bar: tqdm, progress: Progress) -> None:  # type: ignore[type-arg]
    """The rebuild has counted its work (a parallel fill counts the events of its shares)."""
    bar.total, bar.n = progress.total, progress.done
    bar.refresh()


def _advance(bar: tqdm, count: int) -> None:  # type: ignore[type-arg]
    """Events written while the rebuild runs are rebuilt too: the bar's total grows with them (ends at 100 %)."""
    if bar.n + count > bar.total:
        bar.total = bar.n + count
    bar.update(count)


# -- audit -------------------------------------------------------------------
@click.group()
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
                    *map(spreadsheet_cell, (entry.actor_id, entry.actor_email, entry.target_type, entry.target_id,
                                            entry.target_label)),
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


@audit.command("history")
@click.option("--org", "organization_id", required=True, type=click.UUID)
@click.option("--member", "member_id", required=True, type=click.UUID, help="The member's id (also a former member).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (as GET /api/members/{id}/history).")
def audit_history(organization_id: UUID, member_id: UUID, as_json: bool) -> None:
    """Every role a member held: when, granted how and by whom, ended how and by whom."""
    with services() as built:
        holder = access.member_history(built.read_db, organization_id, member_id)
    if holder is None:
        click.echo(f"membership: no member {member_id} in organization {organization_id}, now or before", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(holder.as_json(), indent=2))
        return
    click.echo(f"{holder.email} ({holder.name or holder.user_id})")
    _table("Roles held", [_interval_row(i) for i in holder.intervals], ["role", "since", "until", "granted", "ended"])


@audit.command("access-review")
@click.option("--org", "organization_id", required=True, type=click.UUID)
@click.option("--permission", required=True, type=click.Choice([p.id for p in all_permissions()]))
@click.option("--from", "since", required=True, type=Timestamp(), help="The window's start (ISO 8601).")
@click.option("--to", "until", type=Timestamp(), help="The window's end, included (default: now).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
def audit_access_review(
    organization_id: UUID, permission: str, since: datetime, until: datetime | None, fmt: str
) -> None:
    """Everyone who held PERMISSION at any moment of the window, with the intervals and who granted them."""
    until = until or datetime.now(UTC)
    with services() as built:
        holders = access.access_review(built.read_db, organization_id, permission, since, until)
    if fmt == "json":
        click.echo(json.dumps(access.review_as_json(permission, since, until, holders), indent=2))
    elif fmt == "csv":
        click.echo(access.review_csv(holders), nl=False)
    else:
        click.echo(f"{permission} from {since.isoformat()} to {until.isoformat()}: {len(holders)} people")
        rows = [{"email": h.email, **_interval_row(i)} for h in holders for i in h.intervals]
        _table("Held by", rows, ["email", "role", "since", "until", "granted", "ended"])


def _interval_row(interval: access.Interval) -> dict[str, Any]:
    granted, ended = interval.granted, interval.ended
    return {
        "role": interval.role.name,
        "since": interval.from_at.isoformat(timespec="seconds"),
        "until": interval.to_at.isoformat(timespec="seconds") if interval.to_at else "-",
        "granted": f"{granted.how} by {granted.by.email or granted.by.user_id}",
        "ended": f"{ended.how} by {ended.by.email or ended.by.user_id}" if ended else "-",
    }


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
