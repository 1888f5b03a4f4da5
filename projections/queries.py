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
from datetime import datetime
from typing import Any
from uuid import UUID

from projections import tracking
from projections.catalog import PROJECTIONS
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
_INVITATION_SELECT = (
    "SELECT i.invitation_id, i.organization_id, i.email, i.status, i.invited_by_id, i.invited_by_email, "
    "i.created_at, i.expires_at, i.resent_at, i.resend_count, i.closed_at, "
    f"{_ROLE_COLUMNS}, i.email_status, i.last_sent_at FROM {{invitations}} i JOIN {{roles}} r ON r.role_id = i.role_id"
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
        db.when(row[6]), expires_at, t(row[8]), int(row[9]), t(row[10]), row[16], t(row[17]),
    )  # fmt: skip


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


def _keyset_page(
    db: ReadDatabase,
    count_from: str,
    select: str,
    filters: str,
    params: list[Any],
    order: tuple[str, str, bool],
    cursor: str | None,
    limit: int,
) -> tuple[int, list[Any]]:
    """How many rows match, and the next `limit` + 1 after the cursor (a time and an id), in `order`."""
    time_column, id_column, descending = order
    page_where, page_params = filters, list(params)
    if cursor:
        at, item_id = decode_cursor(cursor, 2)
        after = "<" if descending else ">"
        page_where += f" AND ({time_column} {after} %s OR ({time_column} = %s AND {id_column} {after} %s))"
        moment = db.to_db_time(datetime.fromisoformat(str(at)))
        page_params.extend([moment, moment, item_id])
    direction = " DESC" if descending else ""
    with read(db) as tables:
        total = tables.fetch(f"SELECT COUNT(*) FROM {count_from} WHERE {filters}", *params)[0][0]
        rows = tables.fetch(
            f"{select} WHERE {page_where} ORDER BY {time_column}{direction}, {id_column}{direction} LIMIT %s",
            *page_params,
            limit + 1,
        )
    return int(total), rows


def _next_cursor(items: Sequence[Any], more: bool, time_attribute: str) -> str | None:
    return encode_cursor(getattr(items[-1], time_attribute).isoformat(), items[-1].id) if more else None


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
    total, rows = _keyset_page(
        db,
        "{members} m",
        _MEMBER_SELECT,
        " AND ".join(where),
        params,
        ("m.joined_at", "m.member_id", False),
        cursor,
        limit,
    )
    members = [_member(db, row) for row in rows[:limit]]
    return Page(members, total, _next_cursor(members, len(rows) > limit, "joined_at"))


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
    order = ("i.created_at", "i.invitation_id", True)
    total, rows = _keyset_page(
        db, "{invitations} i", _INVITATION_SELECT, " AND ".join(where), params, order, cursor, limit
    )
    items = [_invitation(db, row, now) for row in rows[:limit]]
    return Page(items, total, _next_cursor(items, len(rows) > limit, "created_at"))


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


def list_invite_links(db: ReadDatabase, organization_id: UUID) -> list[InviteLinkRecord]:
    """Links not deleted, newest first (expired and used-up ones included, so admins see them)."""
    with read(db) as tables:
        rows = tables.fetch(
            f"{_LINK_SELECT} WHERE l.organization_id = %s AND l.deleted_at IS NULL ORDER BY l.created_at DESC, l.link_id",
            str(organization_id),
        )
    return [_link(db, row) for row in rows]


def get_invite_link(db: ReadDatabase, organization_id: UUID, link_id: UUID) -> InviteLinkRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            f"{_LINK_SELECT} WHERE l.organization_id = %s AND l.link_id = %s", str(organization_id), str(link_id)
        )
    return _link(db, rows[0]) if rows else None


def list_roles(db: ReadDatabase, organization_id: UUID) -> list[RoleRecord]:
    """System roles first (Owner, Admin, Developer, Viewer), then custom roles by creation."""
    with read(db) as tables:
        rows = tables.fetch(
            f"SELECT {_ROLE_COLUMNS}, (SELECT COUNT(*) FROM {{members}} m WHERE m.role_id = r.role_id) "
            "FROM {roles} r WHERE r.organization_id = %s ORDER BY r.is_system DESC, r.created_at, r.role_id",
            str(organization_id),
        )
    order = {"Owner": 0, "Admin": 1, "Developer": 2, "Viewer": 3}
    roles = [_role(db, row[:5], int(row[5])) for row in rows]
    return sorted(roles, key=lambda role: (not role.is_system, order.get(role.name, 4) if role.is_system else 0))


def get_role(db: ReadDatabase, organization_id: UUID, role_id: UUID) -> RoleRecord | None:
    return next((role for role in list_roles(db, organization_id) if role.id == str(role_id)), None)


def organizations_of(db: ReadDatabase, user_id: str) -> list[OrganizationRecord]:
    with read(db) as tables:
        rows = tables.fetch(
            f"SELECT o.organization_id, o.name, o.created_at, {_ROLE_COLUMNS} FROM {{members}} m "
            "JOIN {organizations} o ON o.organization_id = m.organization_id JOIN {roles} r ON r.role_id = m.role_id "
            "WHERE m.user_id = %s ORDER BY o.created_at, o.organization_id",
            user_id,
        )
    return [OrganizationRecord(r[0], r[1], db.when(r[2]), _role(db, r[3:8])) for r in rows]


def get_organization(db: ReadDatabase, organization_id: UUID) -> OrganizationRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            "SELECT organization_id, name, created_at FROM {organizations} WHERE organization_id = %s",
            str(organization_id),
        )
    return OrganizationRecord(rows[0][0], rows[0][1], db.when(rows[0][2])) if rows else None


def invitations_sent_since(db: ReadDatabase, user_id: str, since: datetime) -> list[datetime]:
    """When `user_id` invited or re-sent invitations since `since`, oldest first (for the hourly limit)."""
    with read(db) as tables:
        rows = tables.fetch(
            "SELECT occurred_at FROM {audit_log} WHERE actor_id = %s AND occurred_at > %s"
            " AND event_type IN ('MemberInvited', 'InvitationResent') ORDER BY occurred_at",
            user_id,
            db.to_db_time(since),
        )
    return [db.when(row[0]) for row in rows]


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


def list_jobs(db: ReadDatabase, organization_id: UUID, limit: int = 50) -> list[JobRecord]:
    """The organization's jobs, newest first, without item results."""
    with read(db) as tables:
        rows = tables.fetch(
            f"{_JOB_SELECT} WHERE organization_id = %s ORDER BY created_at DESC, job_id LIMIT %s",
            str(organization_id),
            limit,
        )
    return [_job(db, row) for row in rows]
