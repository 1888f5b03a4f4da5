"""Reads over the active generation of each projection.

Every read resolves the active tables inside its own transaction (share-locked
on PostgreSQL), so a rebuild can switch generations without a reader ever
meeting a missing or half-built table.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from membership.permissions import SYSTEM_ROLES
from projections import tracking
from projections.catalog import PROJECTIONS
from projections.mail import outbox
from projections.records import (
    ActorRef,
    InvitationRecord,
    InviteLinkRecord,
    JobItemRecord,
    JobRecord,
    MemberRecord,
    OrganizationRecord,
    Page,
    RoleRecord,
)
from projections.sql import Cursor, ReadDatabase


@dataclass(frozen=True)
class AuditEntry:
    position: int
    organization_id: str
    event_type: str
    occurred_at: datetime
    actor_id: str
    actor_email: str
    target_type: str
    target_id: str
    target_label: str
    details: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "organizationId": self.organization_id,
            "type": self.event_type,
            "occurredAt": self.occurred_at.isoformat(),
            "actor": {"userId": self.actor_id, "email": self.actor_email},
            "target": {"type": self.target_type, "id": self.target_id, "label": self.target_label},
            "details": self.details,
        }


class Tables:
    """An open read transaction and the names of the active tables in it."""

    def __init__(self, db: ReadDatabase, cursor: Cursor, generations: dict[str, int]) -> None:
        self.db = db
        self.cursor = cursor
        self._names: dict[str, str] = {}
        for name, generation in generations.items():
            self._names.update(PROJECTIONS[name](generation).table_names)

    def fetch(self, statement: str, *params: Any) -> list[Any]:
        self.cursor.execute(self.db.sql(statement.format(**self._names)), params)
        return self.cursor.fetchall()


@contextmanager
def read(db: ReadDatabase) -> Iterator[Tables]:
    with db.snapshot() as cursor:
        yield Tables(db, cursor, tracking.active_generations(db, cursor))


def audit_page(
    db: ReadDatabase,
    organization_id: UUID,
    after: int = 0,
    limit: int = 1000,
    newest_first: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    event_type: str | None = None,
    actor: str | None = None,
) -> list[AuditEntry]:
    """Audit entries after position `after` (oldest first), or before it when `newest_first`."""
    where: list[str] = ["organization_id = %s"]
    params: list[Any] = [str(organization_id)]
    if newest_first and after:
        where.append("position < %s")
        params.append(after)
    elif not newest_first:
        where.append("position > %s")
        params.append(after)
    if since is not None:
        where.append("occurred_at >= %s")
        params.append(db.to_db_time(since))
    if until is not None:
        where.append("occurred_at < %s")
        params.append(db.to_db_time(until))
    if event_type:
        where.append("event_type = %s")
        params.append(event_type)
    if actor:
        where.append("(actor_id = %s OR actor_email = %s)")
        params.extend([actor, actor.lower()])
    with read(db) as tables:
        rows = tables.fetch(
            "SELECT position, organization_id, event_type, occurred_at, actor_id, actor_email, target_type,"
            f" target_id, target_label, details FROM {{audit_log}} WHERE {' AND '.join(where)}"
            f" ORDER BY position {'DESC' if newest_first else ''} LIMIT %s",
            *params,
            limit,
        )
    return [
        AuditEntry(int(r[0]), r[1], r[2], db.when(r[3]), r[4], r[5], r[6], r[7], r[8], json.loads(r[9])) for r in rows
    ]


def iter_audit(db: ReadDatabase, organization_id: UUID, page_size: int = 1000, **filters: Any) -> Iterator[AuditEntry]:
    """Every matching entry, fetched a page at a time (constant memory, for exports)."""
    after = 0
    while page := audit_page(db, organization_id, after=after, limit=page_size, **filters):
        yield from page
        after = page[-1].position


# -- the API's reads ---------------------------------------------------------------------------------------------
_ROLE_COLUMNS = "r.role_id, r.name, r.description, r.is_system, r.permissions"
_MEMBER_SELECT = (
    "SELECT m.member_id, m.organization_id, m.user_id, m.email, m.name, m.joined_at, a.last_active_at, "
    f"{_ROLE_COLUMNS} FROM {{members}} m JOIN {{roles}} r ON r.role_id = m.role_id "
    "LEFT JOIN member_activity a ON a.organization_id = m.organization_id AND a.user_id = m.user_id"
)
# The e-mail of the invitation's current token: its delivery is the mailer's latest one created at or after
# the invitation was (re-)sent (one indexed lookup per invitation).
_INVITATION_SELECT = (
    "SELECT i.invitation_id, i.organization_id, i.email, i.status, i.invited_by_id, i.invited_by_email, "
    "i.created_at, i.expires_at, i.resent_at, i.resend_count, i.closed_at, "
    f"{_ROLE_COLUMNS}, i.email_status, i.last_sent_at, d.status, d.last_error, d.next_attempt_at "
    "FROM {invitations} i JOIN {roles} r ON r.role_id = i.role_id "
    "LEFT JOIN mail_deliveries d ON d.delivery_id = (SELECT m.delivery_id FROM mail_deliveries m "
    "WHERE m.invitation_id = i.invitation_id AND m.created_at >= COALESCE(i.resent_at, i.created_at) "
    "ORDER BY m.created_at DESC LIMIT 1)"
)
_LINK_SELECT = (
    "SELECT l.link_id, l.organization_id, l.max_uses, l.use_count, l.expires_at, l.created_by_id, "
    f"l.created_by_email, l.created_at, l.deleted_at, {_ROLE_COLUMNS} "
    "FROM {invite_links} l JOIN {roles} r ON r.role_id = l.role_id"
)
INVITATION_STATUSES = ("pending", "accepted", "expired", "cancelled", "all")


def like_literal(text: str) -> str:
    """`text` matched literally inside a LIKE pattern (with ESCAPE '!')."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """The values a cursor holds; ValueError when it was not made by `encode_cursor`."""
    if not cursor.isascii() or not all(c.isalnum() or c in "-_" for c in cursor):
        raise ValueError("not a valid cursor")  # the decoder would skip stray characters, not refuse them
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as error:
        raise ValueError("not a valid cursor") from error
    if not isinstance(values, list) or len(values) != size or not all(isinstance(v, str | int) for v in values):
        raise ValueError("not a valid cursor")
    return values


def _role(db: ReadDatabase, row: Sequence[Any], count: int = 0) -> RoleRecord:
    role_id, name, description, is_system, permissions = row
    return RoleRecord(role_id, name, description, bool(is_system), tuple(permissions.split()), count)


def _member(db: ReadDatabase, row: Sequence[Any]) -> MemberRecord:
    t = db.from_db_time
    return MemberRecord(row[0], row[1], row[2], row[3], row[4], _role(db, row[7:12]), db.when(row[5]), t(row[6]))


def _invitation(db: ReadDatabase, row: Sequence[Any], now: datetime) -> InvitationRecord:
    t = db.from_db_time
    expires_at = t(row[7])
    assert expires_at is not None
    status = "expired" if row[3] == "pending" and expires_at <= now else row[3]
    return InvitationRecord(
        row[0], row[1], row[2], status, _role(db, row[11:16]), row[4], row[5],
        db.when(row[6]), expires_at, t(row[8]), int(row[9]), t(row[10]), *_email(db, row[16], row[17:21]),
    )  # fmt: skip


def _email(db: ReadDatabase, recorded: str, columns: Sequence[Any]) -> tuple[str, Any, str | None, Any]:
    """email_status, last_sent_at, last_error, next_attempt_at: recorded outcomes (events) first, then the mailer's row."""
    last_sent_at, state, error, next_attempt_at = columns
    if recorded in ("sent", "failed") or state in (None, outbox.SKIPPED):
        status = recorded
    else:
        status = "retrying" if state == outbox.QUEUED and error is not None else state
    waiting = status in ("queued", "retrying") and state == outbox.QUEUED
    shown_error = error if status in ("retrying", "sending", "failed") else None
    return status, db.from_db_time(last_sent_at), shown_error, db.from_db_time(next_attempt_at) if waiting else None


def _link(db: ReadDatabase, row: Sequence[Any]) -> InviteLinkRecord:
    t, w = db.from_db_time, db.when
    return InviteLinkRecord(
        row[0],
        row[1],
        _role(db, row[9:14]),
        int(row[2]),
        int(row[3]),
        w(row[4]),
        row[5],
        row[6],
        w(row[7]),
        t(row[8]),
    )


def member_for_user(db: ReadDatabase, organization_id: UUID, user_id: str) -> MemberRecord | None:
    """The caller's membership (with role and permissions), or None: authorization reads this."""
    with read(db) as tables:
        rows = tables.fetch(
            f"{_MEMBER_SELECT} WHERE m.organization_id = %s AND m.user_id = %s", str(organization_id), user_id
        )
    return _member(db, rows[0]) if rows else None


def get_member(db: ReadDatabase, organization_id: UUID, member_id: UUID) -> MemberRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            f"{_MEMBER_SELECT} WHERE m.organization_id = %s AND m.member_id = %s", str(organization_id), str(member_id)
        )
    return _member(db, rows[0]) if rows else None


@dataclass(frozen=True)
class Key:
    """One expression of a list's order, and what its cursors hold for it (str, int or datetime)."""

    column: str
    descending: bool = False
    kind: type = str


def _ordered_page(
    db: ReadDatabase,
    count_from: str,
    select: str,
    filters: str,
    params: Sequence[Any],
    keys: Sequence[Key],
    cursor: str | None,
    limit: int,
) -> tuple[int, list[Any], bool]:
    """How many rows match, the first `limit` after the cursor in the order of `keys`, and whether more follow."""
    after, after_params = _after(db, keys, cursor) if cursor else ("", [])
    with read(db) as tables:
        total = tables.fetch(f"SELECT COUNT(*) FROM {count_from} WHERE {filters}", *params)[0][0]
        rows = tables.fetch(
            f"{select} WHERE {filters}{after} ORDER BY {_order(keys)} LIMIT %s", *params, *after_params, limit + 1
        )
    return int(total), rows[:limit], len(rows) > limit


def _order(keys: Sequence[Key]) -> str:
    return ", ".join(f"{key.column}{' DESC' if key.descending else ''}" for key in keys)


def _after(db: ReadDatabase, keys: Sequence[Key], cursor: str) -> tuple[str, list[Any]]:
    """` AND ...`: the rows after the cursor in the order of `keys`; ValueError for a cursor we did not make."""
    values = [_cursor_value(db, key, value) for key, value in zip(keys, decode_cursor(cursor, len(keys)), strict=True)]
    clauses, params = [], [values[0]]
    for i, key in enumerate(keys):
        ties = [f"{tied.column} = %s" for tied in keys[:i]]
        clauses.append(" AND ".join([*ties, f"{key.column} {'<' if key.descending else '>'} %s"]))
        params.extend(values[: i + 1])
    # The first key's bound alone lets an index range scan start at the cursor.
    bound = f"{keys[0].column} {'<=' if keys[0].descending else '>='} %s"
    return f" AND {bound} AND (({') OR ('.join(clauses)}))", params


def _cursor_value(db: ReadDatabase, key: Key, value: Any) -> Any:
    if key.kind is datetime and isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("not a valid cursor")
        try:
            return db.to_db_time(moment.astimezone(UTC))
        except OverflowError:
            raise ValueError("not a valid cursor") from None
    if type(value) is not key.kind:
        raise ValueError("not a valid cursor")
    return value


def _cursor_after(*values: Any) -> str:
    """The cursor for the rows after one with these key values."""
    return encode_cursor(*(value.isoformat() if isinstance(value, datetime) else value for value in values))


_MEMBER_KEYS = (Key("m.joined_at", kind=datetime), Key("m.member_id"))
_INVITATION_KEYS = (Key("i.created_at", descending=True, kind=datetime), Key("i.invitation_id", descending=True))


def list_members(
    db: ReadDatabase,
    organization_id: UUID,
    role_id: str | None = None,
    search: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[MemberRecord]:
    """Oldest members first; filters by role and by a case-insensitive search in e-mail or name."""
    where, params = ["m.organization_id = %s"], [str(organization_id)]
    if role_id:
        where.append("m.role_id = %s")
        params.append(role_id)
    if search:
        where.append("(LOWER(m.email) LIKE %s ESCAPE '!' OR LOWER(m.name) LIKE %s ESCAPE '!')")
        pattern = "%" + like_literal(search.lower()) + "%"
        params.extend([pattern, pattern])
    total, rows, more = _ordered_page(
        db, "{members} m", _MEMBER_SELECT, " AND ".join(where), params, _MEMBER_KEYS, cursor, limit
    )
    members = [_member(db, row) for row in rows]
    return Page(members, total, _cursor_after(members[-1].joined_at, members[-1].id) if more else None)


def list_invitations(
    db: ReadDatabase,
    organization_id: UUID,
    now: datetime,
    status: str = "pending",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[InvitationRecord]:
    """Newest first. `expired` means stored as pending (or replaced) with the expiry passed."""
    where, params = ["i.organization_id = %s"], [str(organization_id)]
    moment = db.to_db_time(now)
    if status == "pending":
        where.append("i.status = 'pending' AND i.expires_at > %s")
        params.append(moment)
    elif status == "expired":
        where.append("(i.status = 'expired' OR (i.status = 'pending' AND i.expires_at <= %s))")
        params.append(moment)
    elif status in ("accepted", "cancelled"):
        where.append("i.status = %s")
        params.append(status)
    total, rows, more = _ordered_page(
        db, "{invitations} i", _INVITATION_SELECT, " AND ".join(where), params, _INVITATION_KEYS, cursor, limit
    )
    items = [_invitation(db, row, now) for row in rows]
    return Page(items, total, _cursor_after(items[-1].created_at, items[-1].id) if more else None)


def get_invitation(
    db: ReadDatabase, organization_id: UUID, invitation_id: UUID, now: datetime
) -> InvitationRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            f"{_INVITATION_SELECT} WHERE i.organization_id = %s AND i.invitation_id = %s",
            str(organization_id),
            str(invitation_id),
        )
    return _invitation(db, rows[0], now) if rows else None


_LINK_KEYS = (Key("l.created_at", descending=True, kind=datetime), Key("l.link_id"))


def list_invite_links(
    db: ReadDatabase, organization_id: UUID, limit: int = 50, cursor: str | None = None
) -> Page[InviteLinkRecord]:
    """Links not deleted, newest first (expired and used-up ones included, so admins see them)."""
    total, rows, more = _ordered_page(
        db, "{invite_links} l", _LINK_SELECT, "l.organization_id = %s AND l.deleted_at IS NULL",
        [str(organization_id)], _LINK_KEYS, cursor, limit,
    )  # fmt: skip
    links = [_link(db, row) for row in rows]
    return Page(links, total, _cursor_after(links[-1].created_at, links[-1].id) if more else None)


def get_invite_link(db: ReadDatabase, organization_id: UUID, link_id: UUID) -> InviteLinkRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            f"{_LINK_SELECT} WHERE l.organization_id = %s AND l.link_id = %s", str(organization_id), str(link_id)
        )
    return _link(db, rows[0]) if rows else None


# The roles' order: system roles in their fixed order (Owner, Admin, Developer, Viewer), then custom roles by
# creation. The rank is the first key, so a cursor keeps that order across pages.
_ROLE_RANK = (
    f"CASE WHEN r.is_system = 0 THEN {len(SYSTEM_ROLES) + 1} "
    + "".join(f"WHEN r.name = '{role.name}' THEN {rank} " for rank, role in enumerate(SYSTEM_ROLES))
    + f"ELSE {len(SYSTEM_ROLES)} END"
)
_ROLE_KEYS = (Key(_ROLE_RANK, kind=int), Key("r.created_at", kind=datetime), Key("r.role_id"))
_COUNTED_ROLE_SELECT = (
    f"SELECT {_ROLE_COLUMNS}, (SELECT COUNT(*) FROM {{members}} m WHERE m.organization_id = r.organization_id"
    f" AND m.role_id = r.role_id), {_ROLE_RANK}, r.created_at FROM {{roles}} r"
)


def role_page(db: ReadDatabase, organization_id: UUID, limit: int = 50, cursor: str | None = None) -> Page[RoleRecord]:
    """A page of roles with their member counts, in the roles' order (system roles first)."""
    select, filters = _COUNTED_ROLE_SELECT, "r.organization_id = %s"
    total, rows, more = _ordered_page(
        db, "{roles} r", select, filters, [str(organization_id)], _ROLE_KEYS, cursor, limit
    )
    roles = [_role(db, row[:5], int(row[5])) for row in rows]
    return Page(roles, total, _cursor_after(rows[-1][6], db.when(rows[-1][7]), rows[-1][0]) if more else None)


def list_roles(db: ReadDatabase, organization_id: UUID) -> list[RoleRecord]:
    """Every role, in the roles' order (to find one by name; the API lists them a page at a time)."""
    with read(db) as tables:
        rows = tables.fetch(
            f"{_COUNTED_ROLE_SELECT} WHERE r.organization_id = %s ORDER BY {_order(_ROLE_KEYS)}", str(organization_id)
        )
    return [_role(db, row[:5], int(row[5])) for row in rows]


def get_role(db: ReadDatabase, organization_id: UUID, role_id: UUID) -> RoleRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            f"{_COUNTED_ROLE_SELECT} WHERE r.organization_id = %s AND r.role_id = %s",
            str(organization_id),
            str(role_id),
        )
    return _role(db, rows[0][:5], int(rows[0][5])) if rows else None


_MEMBERSHIPS = "{members} m JOIN {organizations} o ON o.organization_id = m.organization_id"
_ORGANIZATION_KEYS = (Key("o.created_at", kind=datetime), Key("o.organization_id"))


def organizations_of(
    db: ReadDatabase, user_id: str, limit: int = 50, cursor: str | None = None
) -> Page[OrganizationRecord]:
    """The organizations `user_id` belongs to, with their role in each, oldest first."""
    total, rows, more = _ordered_page(
        db, _MEMBERSHIPS,
        f"SELECT o.organization_id, o.name, o.created_at, {_ROLE_COLUMNS} FROM {_MEMBERSHIPS} "
        "JOIN {roles} r ON r.role_id = m.role_id",
        "m.user_id = %s", [user_id], _ORGANIZATION_KEYS, cursor, limit,
    )  # fmt: skip
    organizations = [OrganizationRecord(r[0], r[1], db.when(r[2]), _role(db, r[3:8])) for r in rows]
    last = organizations[-1] if more else None
    return Page(organizations, total, _cursor_after(last.created_at, last.id) if last else None)


def get_organization(db: ReadDatabase, organization_id: UUID) -> OrganizationRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            "SELECT organization_id, name, created_at FROM {organizations} WHERE organization_id = %s",
            str(organization_id),
        )
    return OrganizationRecord(rows[0][0], rows[0][1], db.when(rows[0][2])) if rows else None


def touch_activity(db: ReadDatabase, organization_id: UUID, user_id: str, at: datetime) -> None:
    """Record that a member was active (telemetry outside the event stream; kept across rebuilds)."""
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(
                "INSERT INTO member_activity (organization_id, user_id, last_active_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (organization_id, user_id) DO UPDATE SET last_active_at = excluded.last_active_at"
            ),
            (str(organization_id), user_id, db.to_db_time(at)),
        )


_JOB_SELECT = (
    "SELECT job_id, organization_id, job_type, status, total, processed, succeeded, created_by_id, created_by_email,"
    " created_at, started_at, finished_at, cancel_requested FROM {jobs}"
)


def _job(db: ReadDatabase, row: Sequence[Any], results: tuple[JobItemRecord, ...] = ()) -> JobRecord:
    t = db.from_db_time
    return JobRecord(
        row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), int(row[6]), ActorRef(row[7], row[8]),
        db.when(row[9]), t(row[10]), t(row[11]), bool(row[12]), results,
    )  # fmt: skip


def get_job(db: ReadDatabase, organization_id: UUID, job_id: UUID) -> JobRecord | None:
    """A job with every item's result, in request order."""
    with read(db) as tables:
        rows = tables.fetch(
            f"{_JOB_SELECT} WHERE organization_id = %s AND job_id = %s", str(organization_id), str(job_id)
        )
        if not rows:
            return None
        items = tables.fetch(
            "SELECT member_id, status, code, message FROM {job_results} WHERE job_id = %s ORDER BY item", str(job_id)
        )
    return _job(db, rows[0], tuple(JobItemRecord(*item) for item in items))


_JOB_KEYS = (Key("created_at", descending=True, kind=datetime), Key("job_id"))


def list_jobs(db: ReadDatabase, organization_id: UUID, limit: int = 50, cursor: str | None = None) -> Page[JobRecord]:
    """The organization's jobs, newest first, without item results."""
    total, rows, more = _ordered_page(
        db, "{jobs}", _JOB_SELECT, "organization_id = %s", [str(organization_id)], _JOB_KEYS, cursor, limit
    )
    jobs = [_job(db, row) for row in rows]
    return Page(jobs, total, _cursor_after(jobs[-1].created_at, jobs[-1].id) if more else None)
