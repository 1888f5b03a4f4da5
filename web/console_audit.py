"""Settings > Audit log: the organization's history as sentences (web.audit_sentences), newest first, filtered
by type, actor and dates, a page at a time; and its export as CSV or JSON Lines, streamed.

Like GET /api/audit-log it needs manage:members and reads `projections.audit` with the same filters. The
export has the columns and JSON of `membership audit export` (oldest first, every page), a page of the read
model at a time. A filter the page cannot use is said in words beside the form, never a server error.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Response, g, render_template, request
from flask.typing import ResponseReturnValue

from membership.authorization import check_permission
from membership.permissions import MANAGE_MEMBERS
from membership.text import text_problem
from projections import audit as audit_reads
from projections import roles as roles_reads
from projections.audit import AuditEntry
from projections.engine import reading
from projections.exports import spreadsheet_cell
from projections.roles import RoleRecord
from web.audit_sentences import event_types, sentence, type_name
from web.console import console_blueprint, seat, seated
from web.context import services

bp = console_blueprint("audit_page", __name__, ("audit_page.audit_log", "Audit log"))
PAGE_SIZE = 50
MAX_ACTOR_LENGTH = 254  # the API's (api.schemas.AuditQuerySchema)
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
CSV_COLUMNS = ("position", "occurredAt", "type", "actorId", "actorEmail", "targetType", "targetId", "targetLabel",
               "details")  # fmt: skip
CHUNK = 64 * 1024  # characters of export sent at a time
EXPORT_PAGE_SIZE = 1000  # events read from the read model at a time


@dataclass
class Filters:
    """The filters as typed (`form`, shown back in the form) and as read (`query`, for projections.audit)."""

    form: dict[str, str]
    query: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def link(self, **more: str) -> dict[str, str]:
        """The arguments of a link with these filters (only those that were understood)."""
        return {**{key: value for key, value in self.form.items() if value and not self.problems}, **more}


@bp.get("/settings/audit-log")
@seated
def audit_log() -> ResponseReturnValue:
    here = seat()
    check_permission(here.permissions, MANAGE_MEMBERS)  # as GET /api/audit-log: the log names everyone
    filters = _filters(request.args)
    before = _cursor(request.args.get("cursor") or "", filters)
    if filters.problems:
        return _page(filters, [], None), 400
    entries = audit_reads.audit_page(
        services().read_db, here.organization_id, after=before, limit=PAGE_SIZE + 1, newest_first=True, **filters.query
    )
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    return _page(filters, entries, reading.encode_cursor(entries[-1].position) if more else None)


@bp.get("/settings/audit-log/export")
@seated
def export() -> ResponseReturnValue:
    """Every matching event, oldest first, as a file (constant memory: a page of the read model at a time)."""
    here = seat()
    check_permission(here.permissions, MANAGE_MEMBERS)
    filters = _filters(request.args)
    fmt = request.args.get("format", "")
    if fmt not in FORMATS:
        filters.problems.append("An export is a CSV or a JSON Lines file (format=csv or format=jsonl).")
    if filters.problems:
        return _page(filters, [], None), 400
    entries = audit_reads.iter_audit(services().read_db, here.organization_id, EXPORT_PAGE_SIZE, **filters.query)
    lines = _csv_lines(entries) if fmt == "csv" else (json.dumps(e.as_json(), sort_keys=True) + "\n" for e in entries)
    filename = f"{_slug(here.organization.name)}-audit-log-{services().organizations.clock():%Y-%m-%d}.{fmt}"
    return Response(_chunked(lines), content_type=FORMATS[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip


def _page(filters: Filters, entries: list[AuditEntry], next_cursor: str | None) -> str:
    return render_template(
        "console/audit_log.html", seat=seat(), filters=filters, types=event_types(), roles=_roles(),
        next_cursor=next_cursor,
        rows=[(entry, sentence(entry), type_name(entry.event_type)) for entry in entries],
    )  # fmt: skip


# -- filters -----------------------------------------------------------------------------------------------------
def _filters(args: Mapping[str, str]) -> Filters:
    form = {key: args.get(key, "").strip() for key in ("type", "actor", "email", "role", "since", "until")}
    filters = Filters(form)
    if form["type"]:
        if form["type"] in dict(event_types()):
            filters.query["event_type"] = form["type"]
        else:
            filters.problems.append("Choose an event type from the list.")
    if form["actor"]:
        problem = text_problem(form["actor"])
        if problem or len(form["actor"]) > MAX_ACTOR_LENGTH:
            filters.problems.append(f"Actor must be an e-mail address or a user id of at most {MAX_ACTOR_LENGTH} "
                                    f"characters{f', without {problem}' if problem else ''}.")  # fmt: skip
        else:
            filters.query["actor"] = form["actor"]
    if form["email"]:
        problem = text_problem(form["email"])
        if problem or len(form["email"]) > MAX_ACTOR_LENGTH:
            filters.problems.append(f"About must be an e-mail address of at most {MAX_ACTOR_LENGTH} characters.")
        else:
            filters.query["email"] = form["email"]
    if form["role"]:
        if form["role"] in {role.id for role in _roles()}:
            filters.query["role_id"] = form["role"]
        else:
            filters.problems.append("Choose a role from the list.")
    since, until = _day(form["since"], "Since", filters), _day(form["until"], "Until", filters)
    if since and until and since > until:
        filters.problems.append("Since must be on or before Until.")
    if since:
        filters.query["since"] = datetime.combine(since, time(), UTC)
    if until and until < date.max:  # Until is included: events before the next day
        filters.query["until"] = datetime.combine(until + timedelta(days=1), time(), UTC)
    return filters


def _roles() -> list[RoleRecord]:
    """Today's roles, for the role filter (once per request)."""
    if "audit_roles" not in g:
        g.audit_roles = roles_reads.list_roles(services().read_db, seat().organization_id, counted=False)
    roles: list[RoleRecord] = g.audit_roles
    return roles


def _day(text: str, label: str, filters: Filters) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        filters.problems.append(f"{label} must be a date, such as 2025-01-31.")
        return None


def _cursor(text: str, filters: Filters) -> int:
    """The position the page starts before (0: the newest); a cursor this page did not make is a problem."""
    if not text:
        return 0
    try:
        (before,) = reading.decode_cursor(text, 1)
        return int(before)
    except ValueError:
        filters.problems.append("That page of the audit log does not exist: start again from the newest events.")
        return 0


# -- export ------------------------------------------------------------------------------------------------------
def _csv_lines(entries: Iterable[AuditEntry]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(
            [entry.position, entry.occurred_at.isoformat(), entry.event_type, *map(spreadsheet_cell, (
                entry.actor_id, entry.actor_email, entry.target_type, entry.target_id, entry.target_label)),
             json.dumps(entry.details, sort_keys=True)]
        )  # fmt: skip
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _chunked(lines: Iterable[str]) -> Iterator[bytes]:
    """Lines joined into chunks of about CHUNK characters: fewer, larger writes to the client."""
    pending: list[str] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= CHUNK:
            yield "".join(pending).encode()
            pending, size = [], 0
    if pending:
        yield "".join(pending).encode()


def _slug(name: str) -> str:
    """The organization's name as a file name: ASCII letters, digits and hyphens only."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:40].strip("-") or "organization"
