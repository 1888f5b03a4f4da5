"""Read model: organizations and their members (what `GET /api/members` lists)."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from membership.domain import Organization, system_role_id
from membership.permissions import OWNER
from projections.base import Projection, Writer


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
    batched = {"organizations": "organization_id", "members": "member_id"}

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        pass

    @apply.register(Organization.Created)
    def _created(self, e: Organization.Created, w: Writer) -> None:
        self.changes["organizations"].insert(str(e.originator_id), name=e.name, created_at=w.time(e.timestamp))

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
