"""oCore's permission model: `action:resource` ids, and the four system roles.

`manage` implies `view` on the same resource, so every permission set is kept
*closed* (see `closure`): comparing two closed sets with `<=` is then the whole
"no privilege escalation" check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ACTIONS = ("view", "manage")
RESOURCES = (
    "members",
    "roles",
    "servers",
    "instances",
    "projects",
    "deployments",
    "settings",
    "billing",
)
ALL_PERMISSIONS: frozenset[str] = frozenset(f"{a}:{r}" for a in ACTIONS for r in RESOURCES)

VIEW_MEMBERS = "view:members"
MANAGE_MEMBERS = "manage:members"
MANAGE_ROLES = "manage:roles"
MANAGE_SETTINGS = "manage:settings"


@dataclass(frozen=True)
class Permission:
    """One grantable permission, as listed by `GET /api/permissions`."""

    action: str
    resource: str

    @property
    def id(self) -> str:
        return f"{self.action}:{self.resource}"

    @property
    def description(self) -> str:
        verb = "View" if self.action == "view" else "Create, change and delete"
        return f"{verb} {self.resource}"


def all_permissions() -> list[Permission]:
    """Every permission, grouped by resource, `view` before `manage`."""
    return [Permission(action, resource) for resource in RESOURCES for action in ACTIONS]


def in_words(permission_ids: Iterable[str]) -> list[str]:
    """What a set of permissions allows, one phrase per resource ("Create, change and delete members")."""
    held = closure(permission_ids)
    return [
        permission.description
        for permission in all_permissions()
        if permission.id in held and not (permission.action == "view" and f"manage:{permission.resource}" in held)
    ]


def unknown_permissions(permission_ids: Iterable[str]) -> list[str]:
    return sorted(set(permission_ids) - ALL_PERMISSIONS)


def closure(permission_ids: Iterable[str]) -> frozenset[str]:
    """The given permissions plus the `view` each `manage` implies."""
    closed = set(permission_ids)
    for permission_id in list(closed):
        action, _, resource = permission_id.partition(":")
        if action == "manage":
            closed.add(f"view:{resource}")
    return frozenset(closed)


@dataclass(frozen=True)
class SystemRole:
    """A role every organization is created with; it cannot be edited or deleted."""

    key: str
    name: str
    description: str
    permissions: frozenset[str]


OWNER = SystemRole(
    "owner", "Owner", "Full control, including ownership transfer and deleting the organization", ALL_PERMISSIONS
)
ADMIN = SystemRole("admin", "Admin", "Full control except owner-only actions", ALL_PERMISSIONS)
DEVELOPER = SystemRole(
    "developer",
    "Developer",
    "Manages projects, instances and deployments; views everything else",
    closure({"manage:projects", "manage:instances", "manage:deployments"} | {f"view:{r}" for r in RESOURCES}),
)
VIEWER = SystemRole("viewer", "Viewer", "Views everything, changes nothing", frozenset(f"view:{r}" for r in RESOURCES))
SYSTEM_ROLES = (OWNER, ADMIN, DEVELOPER, VIEWER)
