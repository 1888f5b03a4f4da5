"""Read model: system and custom roles per organization, with their permissions."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from membership.domain import Organization
from projections.base import Projection, Writer


def encode_permissions(permissions: list[str]) -> str:
    return " ".join(sorted(permissions))


class RolesProjection(Projection):
    name = "roles"
    tables = {
        "roles": (
            "role_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL, "
            "is_system INTEGER NOT NULL, permissions TEXT NOT NULL, created_at {ts} NOT NULL"
        ),
    }
    indexes = [("by_org", "roles", "organization_id, is_system, created_at")]
    batched = {"roles": "role_id"}

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        pass

    @apply.register(Organization.Created)
    def _created(self, e: Organization.Created, w: Writer) -> None:
        org, at = str(e.originator_id), w.time(e.timestamp)
        for role in e.roles:
            self._insert(role["id"], org, role["name"], role["description"], True, role["permissions"], at)

    @apply.register(Organization.RoleCreated)
    def _role_created(self, e: Organization.RoleCreated, w: Writer) -> None:
        self._insert(
            str(e.role_id), str(e.originator_id), e.name, e.description, False, e.permissions, w.time(e.timestamp)
        )

    @apply.register(Organization.RoleUpdated)
    def _role_updated(self, e: Organization.RoleUpdated, w: Writer) -> None:
        self.changes["roles"].update(
            str(e.role_id), name=e.name, description=e.description, permissions=encode_permissions(e.permissions)
        )

    @apply.register(Organization.RoleDeleted)
    def _role_deleted(self, e: Organization.RoleDeleted, w: Writer) -> None:
        self.changes["roles"].delete(str(e.role_id))

    def _insert(
        self, role_id: str, org: str, name: str, description: str, system: bool, permissions: list[str], at: Any
    ) -> None:
        self.changes["roles"].insert(
            role_id, organization_id=org, name=name, description=description, is_system=int(system),
            permissions=encode_permissions(permissions), created_at=at,
        )  # fmt: skip
