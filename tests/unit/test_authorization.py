"""The one authorization rule (membership.authorization), on plain permission sets.

The aggregate's guards and the API's per-request check both call these functions, so
they are tested here once, directly; test_organization_rules tests the commands using them.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from membership import authorization as rule
from membership import exceptions as err
from membership.permissions import ADMIN, ALL_PERMISSIONS, DEVELOPER, MANAGE_MEMBERS, OWNER, VIEWER, closure

permission_sets = st.frozensets(st.sampled_from(sorted(ALL_PERMISSIONS)))


def test_a_non_member_is_refused() -> None:
    with pytest.raises(err.NotAMemberError, match="You are not a member of this organization."):
        rule.check_member(None)


def test_a_member_is_passed_through_as_recorded() -> None:
    record = {"id": "m-1"}
    assert rule.check_member(record) is record


def test_a_missing_permission_is_named() -> None:
    with pytest.raises(err.MissingPermissionError) as refused:
        rule.check_permission(VIEWER.permissions, MANAGE_MEMBERS)
    assert refused.value.permission == MANAGE_MEMBERS
    assert refused.value.message == "This action requires the manage:members permission."
    rule.check_permission(ADMIN.permissions, MANAGE_MEMBERS)


def test_a_developer_cannot_manage_an_admin_but_an_admin_can_manage_a_developer() -> None:
    with pytest.raises(err.PrivilegeEscalationError, match="manage a member who has permissions you lack"):
        rule.check_can_manage(DEVELOPER.permissions, False, ADMIN.permissions)
    rule.check_can_manage(ADMIN.permissions, False, DEVELOPER.permissions)


def test_the_owner_may_manage_and_grant_anything_even_with_an_empty_role() -> None:
    rule.check_can_manage(frozenset(), True, ALL_PERMISSIONS)
    rule.check_can_assign(frozenset(), True, ALL_PERMISSIONS, "Admin", ADMIN.key)
    rule.check_can_grant(frozenset(), True, ALL_PERMISSIONS)
    rule.check_can_change_role(frozenset(), True, ALL_PERMISSIONS)


def test_the_owner_role_is_never_assigned_not_even_by_the_owner() -> None:
    with pytest.raises(err.OwnerRoleNotAssignableError, match="only given by transferring ownership"):
        rule.check_can_assign(ALL_PERMISSIONS, True, OWNER.permissions, OWNER.name, OWNER.key)


def test_a_role_with_permissions_you_lack_cannot_be_assigned_and_is_named() -> None:
    with pytest.raises(err.PrivilegeEscalationError, match="You cannot grant the role 'Admin'"):
        rule.check_can_assign(DEVELOPER.permissions, False, ADMIN.permissions, ADMIN.name, ADMIN.key)


def test_role_permissions_and_role_changes_need_every_permission_involved() -> None:
    with pytest.raises(err.PrivilegeEscalationError, match="A role cannot have permissions you lack."):
        rule.check_can_grant(VIEWER.permissions, False, {"manage:billing"})
    with pytest.raises(err.PrivilegeEscalationError, match="You cannot change a role that has permissions you lack."):
        rule.check_can_change_role(VIEWER.permissions, False, DEVELOPER.permissions)


@given(manager=permission_sets, target=permission_sets, is_owner=st.booleans())
def test_managing_and_granting_hold_iff_the_target_is_covered_or_the_manager_is_owner(
    manager: frozenset[str], target: frozenset[str], is_owner: bool
) -> None:
    allowed = is_owner or all(permission in manager for permission in target)
    assert rule.can_manage(manager, is_owner, target) is allowed
    assert rule.can_grant(manager, is_owner, target) is allowed
    for check in (
        lambda: rule.check_can_manage(manager, is_owner, target),
        lambda: rule.check_can_assign(manager, is_owner, target, "Custom", None),
        lambda: rule.check_can_grant(manager, is_owner, target),
        lambda: rule.check_can_change_role(manager, is_owner, target),
    ):
        if allowed:
            check()
        else:
            with pytest.raises(err.PrivilegeEscalationError):
                check()


@given(manager=permission_sets, target=permission_sets)
def test_for_a_closed_manager_granting_a_set_or_its_closure_is_the_same_question(
    manager: frozenset[str], target: frozenset[str]
) -> None:
    closed = closure(manager)
    assert rule.can_grant(closed, False, target) is rule.can_grant(closed, False, closure(target))
