"""Read model: organizations and their members (what `GET /api/members` lists)."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from membership.domain import Organization, system_role_id
from membership.permissions import OWNER
from projections.base import Projection, Writer

MEMBER_COLUMNS = ("member_id", "organization_id", "user_id", "email", "name", "role_id", "joined_at")
ROLE = MEMBER_COLUMNS.index("role_id")


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

    def __init__(self, generation: int) -> None:
        super().__init__(generation)
        # Members who joined in the current batch: inserted together by flush(), changed here until then.
        self._new_members: dict[str, list[Any]] = {}

    def forget_uncommitted(self) -> None:
        self._new_members.clear()

    def flush(self, w: Writer) -> None:
        rows, self._new_members = list(self._new_members.values()), {}
        if rows:
            w.copy("members", MEMBER_COLUMNS, rows)

    def _set_role(self, w: Writer, member_id: str, role_id: str) -> None:
        if member_id in self._new_members:
            self._new_members[member_id][ROLE] = role_id
        else:
            w.run("UPDATE {members} SET role_id = %s WHERE member_id = %s", role_id, member_id)

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        pass

    @apply.register(Organization.Created)
    def _created(self, e: Organization.Created, w: Writer) -> None:
        w.run("INSERT INTO {organizations} VALUES (%s, %s, %s)", str(e.originator_id), e.name, w.time(e.timestamp))

    @apply.register(Organization.MemberJoined)
    @apply.register(Organization.InviteAccepted)
    @apply.register(Organization.MemberJoinedByLink)
    def _joined(self, e: Any, w: Writer) -> None:
        member_id = str(e.member_id)
        self._new_members[member_id] = [
            member_id, str(e.originator_id), e.user_id, e.email, e.name, str(e.role_id), w.time(e.timestamp)
        ]  # fmt: skip

    @apply.register(Organization.RoleChanged)
    def _role_changed(self, e: Organization.RoleChanged, w: Writer) -> None:
        self._set_role(w, str(e.member_id), str(e.role_id))

    @apply.register(Organization.OwnershipTransferred)
    def _transferred(self, e: Organization.OwnershipTransferred, w: Writer) -> None:
        self._set_role(w, str(e.from_member_id), str(e.demoted_to_role_id))
        self._set_role(w, str(e.to_member_id), str(system_role_id(e.originator_id, OWNER.key)))

    @apply.register(Organization.MemberRemoved)
    @apply.register(Organization.MemberLeft)
    def _gone(self, e: Any, w: Writer) -> None:
        if self._new_members.pop(str(e.member_id), None) is None:
            w.run("DELETE FROM {members} WHERE member_id = %s", str(e.member_id))
