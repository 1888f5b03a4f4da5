"""Read model: organizations and their members (what `GET /api/members` lists)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from membership.organization import Organization, system_role_id
from membership.permissions import OWNER
from projections.engine.base import Projection, Writer
from projections.engine.reading import Key, Page, cursor_after, like_literal, ordered_page, read
from projections.engine.sql import Cursor, ReadDatabase
from projections.roles import ROLE_COLUMNS, RoleRecord, role_record


class MembersProjection(Projection):
    name = "members"
    tables = {
        "organizations": "organization_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at {ts} NOT NULL",
        "members": (
            "member_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, user_id TEXT NOT NULL, "
            "email TEXT NOT NULL, name TEXT NOT NULL, role_id TEXT NOT NULL, joined_at {ts} NOT NULL"
        ),
    }
    indexes = [
        ("by_org_joined", "members", "organization_id, joined_at, member_id"),
        ("by_org_role", "members", "organization_id, role_id"),
        ("by_org_email", "members", "organization_id, email"),
        ("by_user", "members", "user_id, organization_id"),
    ]
    # Search (`LOWER(email) LIKE '%text%' OR LOWER(name) LIKE ...`) served by trigram indexes, not a scan of the
    # organization. Their list of rows not yet sorted in is kept short (128 kB, not 4 MB): every search reads all
    # of it, so at the default a search on 100,000 freshly loaded members took 140 ms, and 12 ms at 128 kB;
    # sorting each row in at once (no list at all) made loading those members twice as long, 128 kB a third.
    postgres_indexes = [
        (f"{column}_trgm", "members", "pg_trgm",
         f"gin ((LOWER({column})) {{schema}}.gin_trgm_ops) WITH (gin_pending_list_limit = 128)")
        for column in ("email", "name")
    ]  # fmt: skip
    batched = {"organizations": "organization_id", "members": "member_id"}

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        pass

    @apply.register(Organization.Created)
    def _created(self, e: Organization.Created, w: Writer) -> None:
        self.changes["organizations"].insert(str(e.originator_id), name=e.name, created_at=w.time(e.timestamp))

    @apply.register(Organization.OrganizationRenamed)
    def _renamed(self, e: Organization.OrganizationRenamed, w: Writer) -> None:
        self.changes["organizations"].update(str(e.originator_id), name=e.name)

    @apply.register(Organization.OrganizationDeleted)
    def _deleted(self, e: Organization.OrganizationDeleted, w: Writer) -> None:
        self.delete_organization_rows(w, str(e.originator_id))

    @apply.register(Organization.MemberJoined)
    @apply.register(Organization.InviteAccepted)
    @apply.register(Organization.MemberJoinedByLink)
    def _joined(self, e: Any, w: Writer) -> None:
        self.changes["members"].insert(
            str(e.member_id), organization_id=str(e.originator_id), user_id=e.user_id, email=e.email, name=e.name,
            role_id=str(e.role_id), joined_at=w.time(e.timestamp),
        )  # fmt: skip

    @apply.register(Organization.RoleChanged)
    def _role_changed(self, e: Organization.RoleChanged, w: Writer) -> None:
        self.changes["members"].update(str(e.member_id), role_id=str(e.role_id))

    @apply.register(Organization.OwnershipTransferred)
    def _transferred(self, e: Organization.OwnershipTransferred, w: Writer) -> None:
        members = self.changes["members"]
        members.update(str(e.from_member_id), role_id=str(e.demoted_to_role_id))
        members.update(str(e.to_member_id), role_id=str(system_role_id(e.originator_id, OWNER.key)))

    @apply.register(Organization.MemberRemoved)
    @apply.register(Organization.MemberLeft)
    def _gone(self, e: Any, w: Writer) -> None:
        self.changes["members"].delete(str(e.member_id))

    @apply.register(Organization.PersonErased)
    def _erased(self, e: Organization.PersonErased, w: Writer) -> None:
        if e.member_id is not None:
            self.changes["members"].delete(str(e.member_id))


# -- reads -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActorRef:
    """Who did something: the user id from their token, and their e-mail then."""

    user_id: str
    email: str


@dataclass(frozen=True)
class MemberRecord:
    id: str
    organization_id: str
    user_id: str
    email: str
    name: str
    role: RoleRecord
    joined_at: datetime
    last_active_at: datetime | None


@dataclass(frozen=True)
class OrganizationRecord:
    id: str
    name: str
    created_at: datetime
    role: RoleRecord | None = None  # the caller's role, when listed for a user


_MEMBER_SELECT = (
    "SELECT m.member_id, m.organization_id, m.user_id, m.email, m.name, m.joined_at, a.last_active_at, "
    f"{ROLE_COLUMNS} FROM {{members}} m JOIN {{roles}} r ON r.role_id = m.role_id "
    "LEFT JOIN member_activity a ON a.organization_id = m.organization_id AND a.user_id = m.user_id"
)


def _member(db: ReadDatabase, row: Sequence[Any]) -> MemberRecord:
    t = db.from_db_time
    return MemberRecord(row[0], row[1], row[2], row[3], row[4], role_record(db, row[7:12]), db.when(row[5]), t(row[6]))


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


_MEMBER_KEYS = (Key("m.joined_at", kind=datetime), Key("m.member_id"))


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
    total, rows, more = ordered_page(
        db, "{members} m", _MEMBER_SELECT, " AND ".join(where), params, _MEMBER_KEYS, cursor, limit
    )
    members = [_member(db, row) for row in rows]
    return Page(members, total, cursor_after(members[-1].joined_at, members[-1].id) if more else None)


_MEMBERSHIPS = "{members} m JOIN {organizations} o ON o.organization_id = m.organization_id"


_ORGANIZATION_KEYS = (Key("o.created_at", kind=datetime), Key("o.organization_id"))


def organizations_of(
    db: ReadDatabase, user_id: str, limit: int = 50, cursor: str | None = None, counted: bool = True
) -> Page[OrganizationRecord]:
    """The organizations `user_id` belongs to, with their role in each, oldest first (`total` -1 unless
    `counted`)."""
    total, rows, more = ordered_page(
        db, _MEMBERSHIPS,
        f"SELECT o.organization_id, o.name, o.created_at, {ROLE_COLUMNS} FROM {_MEMBERSHIPS} "
        "JOIN {roles} r ON r.role_id = m.role_id",
        "m.user_id = %s", [user_id], _ORGANIZATION_KEYS, cursor, limit, counted,
    )  # fmt: skip
    organizations = [OrganizationRecord(r[0], r[1], db.when(r[2]), role_record(db, r[3:8])) for r in rows]
    last = organizations[-1] if more else None
    return Page(organizations, total, cursor_after(last.created_at, last.id) if last else None)


def get_organization(db: ReadDatabase, organization_id: UUID) -> OrganizationRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            "SELECT organization_id, name, created_at FROM {organizations} WHERE organization_id = %s",
            str(organization_id),
        )
    return OrganizationRecord(rows[0][0], rows[0][1], db.when(rows[0][2])) if rows else None


def create_activity_table(db: ReadDatabase, cursor: Cursor) -> None:
    """Member activity is telemetry, not a domain fact: outside the projections, kept across rebuilds."""
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS member_activity (organization_id TEXT NOT NULL, user_id TEXT NOT NULL,"
        f" last_active_at {db.type('ts')} NOT NULL, PRIMARY KEY (organization_id, user_id))"
    )


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
