"""What the CLI prints: aligned tables and sentences for people, JSON for scripts, a live bar for jobs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from tqdm import tqdm

Column = tuple[str, Callable[[dict[str, Any]], Any]]
FINISHED = frozenset({"succeeded", "partially_succeeded", "failed", "cancelled"})
POLL_S = 0.2


def echo_json(data: Any) -> None:
    """The server's JSON, indented, on stdout."""
    click.echo(json.dumps(data, indent=2))


def table(rows: Iterable[dict[str, Any]], columns: Sequence[Column]) -> None:
    """Rows as left-aligned columns under upper-case headers; empty cells show as `-`."""
    cells = [[_cell(get(row)) for _, get in columns] for row in rows]
    headers = [name for name, _ in columns]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=False)]
    for line in [headers, *cells]:
        click.echo("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return " ".join(str(value).split())


def when(value: str | None) -> str | None:
    """An ISO timestamp from the API as `YYYY-MM-DD HH:MM` (UTC), or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


def job_summary(job: dict[str, Any]) -> str:
    """One line with a job's status and counts."""
    return (
        f"Job {job['id']} {job['status']}: {job['succeeded']} succeeded, {job['failed']} failed, "
        f"{job['processed']} of {job['total']} processed."
    )


def watch_job(fetch: Callable[[], dict[str, Any]], job: dict[str, Any]) -> dict[str, Any]:
    """Draw a progress bar on stderr, polling `fetch` until the job has finished; returns the last job."""
    with tqdm(total=job["total"], unit="member", desc=job["type"], file=sys.stderr, leave=True) as bar:
        while True:
            bar.n = job["processed"]
            bar.set_postfix_str(f"{job['status']}, {job['succeeded']} ok, {job['failed']} failed", refresh=False)
            bar.refresh()
            if job["status"] in FINISHED:
                return job
            time.sleep(POLL_S)
            job = fetch()


# -- how each resource reads for people -----------------------------------------------------------------------------
def _get(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(key)


def _role(row: dict[str, Any]) -> Any:
    return row["role"]["name"]


def _actor(ref: dict[str, Any]) -> Any:
    return ref.get("email") or ref.get("userId")


def _uses(link: dict[str, Any]) -> str:
    return f"{link['useCount']}/{link['maxUses'] or 'unlimited'}"


MEMBERS: list[Column] = [
    ("ID", _get("id")), ("EMAIL", _get("email")), ("NAME", _get("name")), ("ROLE", _role),
    ("JOINED", lambda m: when(m["joinedAt"])), ("LAST ACTIVE", lambda m: when(m.get("lastActiveAt"))),
]  # fmt: skip
INVITATIONS: list[Column] = [
    ("ID", _get("id")), ("EMAIL", _get("email")), ("ROLE", _role), ("STATUS", _get("status")),
    ("EXPIRES", lambda i: when(i["expiresAt"])), ("INVITED BY", lambda i: _actor(i["invitedBy"])),
]  # fmt: skip
INVITE_LINKS: list[Column] = [
    ("ID", _get("id")), ("CODE", _get("code")), ("ROLE", _role), ("USES", _uses),
    ("EXPIRES", lambda link: when(link["expiresAt"])), ("URL", _get("url")),
]  # fmt: skip
ROLES: list[Column] = [
    ("ID", _get("id")), ("NAME", _get("name")), ("TYPE", lambda r: "system" if r["isSystem"] else "custom"),
    ("MEMBERS", _get("memberCount")), ("PERMISSIONS", lambda r: len(r["permissions"])),
    ("DESCRIPTION", _get("description")),
]  # fmt: skip
JOBS: list[Column] = [
    ("ID", _get("id")), ("TYPE", _get("type")), ("STATUS", _get("status")),
    ("DONE", lambda j: f"{j['processed']}/{j['total']}"), ("OK", _get("succeeded")), ("FAILED", _get("failed")),
    ("CREATED", lambda j: when(j["createdAt"])),
]  # fmt: skip
EVENTS: list[Column] = [
    ("TIME", lambda e: when(e["occurredAt"])), ("TYPE", _get("type")), ("ACTOR", lambda e: _actor(e["actor"])),
    ("TARGET", lambda e: f"{e['target']['type']} {e['target']['label'] or e['target']['id']}"),
]  # fmt: skip
FAILED_ITEMS: list[Column] = [("MEMBER", _get("memberId")), ("CODE", _get("code")), ("MESSAGE", _get("message"))]
ORGANIZATIONS: list[Column] = [("ID", _get("id")), ("NAME", _get("name")), ("ROLE", _role)]
PERMISSIONS: list[Column] = [("ID", _get("id")), ("DESCRIPTION", _get("description"))]


def lister(key: str, columns: Sequence[Column]) -> Callable[[dict[str, Any]], None]:
    """A renderer for a list answer: the table of `data[key]`."""
    return lambda data: table(data[key], columns)


def message(data: dict[str, Any]) -> None:
    click.echo(data["message"])


def job(data: dict[str, Any]) -> None:
    """The summary line, then the items that failed."""
    click.echo(job_summary(data))
    failed = [item for item in data.get("results", []) if item["status"] != "succeeded"]
    if failed:
        table(failed, FAILED_ITEMS)


def job_started(data: dict[str, Any]) -> None:
    job, count = data["job"], data["job"]["total"]
    click.echo(
        f"Started job {job['id']} ({job['type']}, {count} member{'' if count == 1 else 's'}); "
        f"follow it with: ocore job show {job['id']} --watch"
    )


def me(data: dict[str, Any]) -> None:
    click.echo(f"{data['email']} ({data['userId']}), {_role(data)} in organization {data['organizationId']}")
    click.echo(f"permissions: {', '.join(data['permissions'])}")


def organization_created(data: dict[str, Any]) -> None:
    click.echo(f"Created organization {data['name']} ({data['id']}); use it with --org {data['id']}.")


def invited(data: dict[str, Any]) -> None:
    click.echo(
        f"Invited {data['email']} as {_role(data)}: invitation {data['id']}, expires {when(data['expiresAt'])} UTC."
    )


def resent(data: dict[str, Any]) -> None:
    click.echo(f"Re-sent the invitation to {data['email']}; expires {when(data['expiresAt'])} UTC.")


def role_changed(data: dict[str, Any]) -> None:
    click.echo(f"{data['member']['email']} is now {_role(data['member'])}.")


def joined(data: dict[str, Any]) -> None:
    member = data["member"]
    click.echo(f"Joined organization {data['organizationId']} as {_role(member)} (member {member['id']}).")


def link_created(data: dict[str, Any]) -> None:
    click.echo(data["url"])
    click.echo(
        f"Link {data['id']} (code {data['code']}) grants {_role(data)}, {_uses(data)} uses, "
        f"expires {when(data['expiresAt'])} UTC."
    )


def role_saved(verb: str) -> Callable[[dict[str, Any]], None]:
    """`Created role ...` / `Updated role ...` with the role's permissions."""
    return lambda r: click.echo(
        f"{verb} role {r['name']} ({r['id']}): {', '.join(r['permissions']) or 'no permissions'}."
    )
