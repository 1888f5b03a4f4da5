"""The one rule "may this member do X, to that member, or give that role", on plain permission sets.

The Organization aggregate's guards and the API's per-request check both ask these
functions, so the rule and its refusals (`membership.exceptions`) exist once. A manager
may act on a member, or give a role or permissions, only when they hold every permission
involved, or are the Owner. Permission sets are closed (`membership.permissions.closure`),
so `<=` is the whole comparison.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TypeVar

from membership import exceptions as err
from membership.permissions import OWNER

Member = TypeVar("Member")


def check_member(member: Member | None) -> Member:
    """The caller's membership, however it is recorded; NotAMemberError when there is none."""
    if member is None:
        raise err.NotAMemberError("You are not a member of this organization.")
    return member


def check_permission(permissions: Collection[str], permission: str) -> None:
    if permission not in permissions:
        raise err.MissingPermissionError(permission)


def can_grant(manager_permissions: Collection[str], manager_is_owner: bool, permissions: Iterable[str]) -> bool:
    """The rule: the Owner may give anything; anyone else only permissions they hold themselves."""
    if manager_is_owner:
        return True
    # Permission sets are usually frozensets already: compare them without copying (a bulk job asks 10,000 times).
    held = manager_permissions if isinstance(manager_permissions, frozenset | set) else frozenset(manager_permissions)
    return held.issuperset(permissions)


def can_manage(manager_permissions: Collection[str], manager_is_owner: bool, member_permissions: Iterable[str]) -> bool:
    """Changing or removing a member gives nobody more: the manager must hold all of the member's permissions."""
    return can_grant(manager_permissions, manager_is_owner, member_permissions)


def check_can_manage(
    manager_permissions: Collection[str], manager_is_owner: bool, member_permissions: Iterable[str]
) -> None:
    if not can_manage(manager_permissions, manager_is_owner, member_permissions):
        raise err.PrivilegeEscalationError("You cannot manage a member who has permissions you lack.")


def check_can_assign(
    manager_permissions: Collection[str],
    manager_is_owner: bool,
    role_permissions: Iterable[str],
    role_name: str,
    role_key: str | None = None,
) -> None:
    """Giving a role (invitation, link, role change): only one the manager may grant; never Owner."""
    if role_key == OWNER.key:
        raise err.OwnerRoleNotAssignableError("The Owner role is only given by transferring ownership.")
    if not can_grant(manager_permissions, manager_is_owner, role_permissions):
        raise err.PrivilegeEscalationError(f"You cannot grant the role {role_name!r}: it has permissions you lack.")


def check_can_grant(manager_permissions: Collection[str], manager_is_owner: bool, permissions: Iterable[str]) -> None:
    """Putting permissions into a role."""
    if not can_grant(manager_permissions, manager_is_owner, permissions):
        raise err.PrivilegeEscalationError("A role cannot have permissions you lack.")


def check_can_change_role(
    manager_permissions: Collection[str], manager_is_owner: bool, role_permissions: Iterable[str]
) -> None:
    """Renaming, re-permissioning or deleting a role is granting it: the same rule."""
    if not can_grant(manager_permissions, manager_is_owner, role_permissions):
        raise err.PrivilegeEscalationError("You cannot change a role that has permissions you lack.")
