"""Read model: system and custom roles per organization, with their permissions."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from membership.domain import Organization
from projections.base import Projection, Writer

_INSERT = (
    "INSERT INTO {roles} (role_id, organization_id, name, description, is_system, permissions, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


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

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        pass

    @apply.register(Organization.Created)
    def _created(self, e: Organization.Created, w: Writer) -> None:
        org, at = str(e.originator_id), w.time(e.timestamp)
        rows = [
            (r["id"], org, r["name"], r["description"], 1, encode_permissions(r["permissions"]), at) for r in e.roles
        ]
        w.run_many(_INSERT, rows)

    @apply.register(Organization.RoleCreated)
    def _role_created(self, e: Organization.RoleCreated, w: Writer) -> None:
        permissions = encode_permissions(e.permissions)
        w.run(_INSERT, str(e.role_id), str(e.originator_id), e.name, e.description, 0, permissions, w.time(e.timestamp))

    @apply.register(Organization.RoleUpdated)
    def _role_updated(self, e: Organization.RoleUpdated, w: Writer) -> None:
        w.run(
            "UPDATE {roles} SET name = %s, description = %s, permissions = %s WHERE role_id = %s",
            e.name,
            e.description,
            encode_permissions(e.permissions),
            str(e.role_id),
        )

    @apply.register(Organization.RoleDeleted)
    def _role_deleted(self, e: Organization.RoleDeleted, w: Writer) -> None:
        w.run("DELETE FROM {roles} WHERE role_id = %s", str(e.role_id))
