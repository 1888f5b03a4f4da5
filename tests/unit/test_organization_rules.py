"""The Organization aggregate's rules (issue 2), one test per rule: command -> events, state or refusal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from membership import exceptions as err
from membership.application import project_organization
from membership.inputs import Actor
from membership.organization import Organization, system_role_id
from membership.state import Member, key_of
from membership.tokens import new_nonce
from tests.factories import new_actor

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
RESOURCES = ("members", "roles", "servers", "instances", "projects", "deployments", "settings", "billing")
VIEW_ALL = frozenset(f"view:{r}" for r in RESOURCES)
EVERYTHING = VIEW_ALL | {f"manage:{r}" for r in RESOURCES}
LEAD_PERMISSIONS = ["manage:members", "manage:roles", *sorted(VIEW_ALL)]


def role(org: Organization, key: str) -> UUID:
    return system_role_id(org.id, key)


def member_id(org: Organization, user: Actor) -> UUID:
    member = org.member_for_user(user.user_id)
    assert member is not None
    return member.id


def role_of(org: Organization, user: Actor) -> UUID:
    return org.get_member(member_id(org, user)).role_id


def invite(org: Organization, by: Actor, email: str, role_id: UUID, now: datetime = NOW, days: int = 7) -> UUID:
    invitation_id = uuid4()
    org.invite_member(by, invitation_id, email, role_id, new_nonce(), now, days)
    return invitation_id


def join(org: Organization, by: Actor, role_id: UUID, label: str = "user") -> Actor:
    user = new_actor(label)
    org.accept_invitation(user, invite(org, by, user.email, role_id), uuid4(), NOW)
    return user


def create_link(org: Organization, by: Actor, role_id: UUID, max_uses: int = 0, days: int = 7) -> UUID:
    link_id = uuid4()
    org.create_invite_link(by, link_id, role_id, new_nonce(), NOW, max_uses, days)
    return link_id


def redeem(org: Organization, user: Actor, link_id: UUID, now: datetime = NOW) -> None:
    org.redeem_invite_link(user, link_id, uuid4(), now)


@dataclass
class Team:
    """An organization with one member per system role, plus a "Team lead" with a custom role."""

    org: Organization
    owner: Actor
    admin: Actor
    developer: Actor
    viewer: Actor
    lead: Actor  # manage:members + manage:roles + view everything: no manage:billing
    lead_role: UUID
    history: list[Any] = field(default_factory=list)

    def events(self) -> list[Any]:
        """The events recorded since the last call (kept in `history` for replays)."""
        new = self.org.collect_events()
        self.history.extend(new)
        return new


@pytest.fixture
def team() -> Team:
    owner = new_actor("owner")
    org = Organization.create(uuid4(), "Acme", owner, uuid4(), NOW)
    lead_role = uuid4()
    org.create_role(owner, lead_role, "Team lead", "Manages people", LEAD_PERMISSIONS, NOW)
    members = {key: join(org, owner, role(org, key), key) for key in ("admin", "developer", "viewer")}
    lead = join(org, owner, lead_role, "lead")
    return Team(org, owner, lead=lead, lead_role=lead_role, history=org.collect_events(), **members)


def custom_role(team: Team, permissions: list[str], name: str = "") -> UUID:
    role_id = uuid4()
    team.org.create_role(team.owner, role_id, name or f"Role {role_id.hex[:8]}", "", permissions, NOW)
    team.events()
    return role_id


# -- organizations -------------------------------------------------------------
def test_creator_becomes_the_only_owner() -> None:
    creator = new_actor("creator")
    org = Organization.create(uuid4(), "Acme", creator, uuid4(), NOW)
    created, joined = org.collect_events()
    assert isinstance(created, Organization.Created)
    assert isinstance(joined, Organization.MemberJoined)
    assert (joined.user_id, joined.role_id) == (creator.user_id, role(org, "owner"))
    assert list(org.members) == [str(joined.member_id)] == [org.owner_member_id]


@pytest.mark.parametrize(
    "key, name, permissions",
    [
        ("owner", "Owner", EVERYTHING),
        ("admin", "Admin", EVERYTHING),
        ("developer", "Developer", VIEW_ALL | {"manage:projects", "manage:instances", "manage:deployments"}),
        ("viewer", "Viewer", VIEW_ALL),
    ],
)
def test_organization_has_four_system_roles(key: str, name: str, permissions: frozenset[str]) -> None:
    org = Organization.create(uuid4(), "Acme", new_actor(), uuid4(), NOW)
    system_roles = [r for r in org.roles.values() if r.system]
    assert len(system_roles) == 4 == len(org.roles)
    found = org.get_role(role(org, key))
    assert (found.name, found.permissions, found.key, found.system) == (name, permissions, key, True)


def test_rename_needs_manage_settings_and_records_old_and_new_name(team: Team) -> None:
    assert team.org.rename(team.admin, "  Acme   Corp ", NOW) is True
    (renamed,) = team.events()
    assert isinstance(renamed, Organization.OrganizationRenamed)
    assert (renamed.old_name, renamed.name, team.org.name) == ("Acme", "Acme Corp", "Acme Corp")
    with pytest.raises(err.MissingPermissionError):
        team.org.rename(team.lead, "Lead's Acme", NOW)  # manages members and roles, not settings
    assert team.org.rename(team.owner, "Acme Corp", NOW) is False  # the same name records nothing
    assert team.events() == []


@pytest.mark.parametrize("name", ["", "   ", "a\x00b", "tab\there", "x" * 201])
def test_rename_refuses_what_create_refuses(team: Team, name: str) -> None:
    with pytest.raises(err.InvalidValueError):
        team.org.rename(team.owner, name, NOW)
    assert team.org.name == "Acme"


@pytest.mark.parametrize("who", ["admin", "developer", "viewer", "lead"])
def test_only_the_owner_deletes_the_organization(team: Team, who: str) -> None:
    with pytest.raises(err.OwnerOnlyError):
        team.org.delete(getattr(team, who), NOW)
    assert team.org.deleted is False


def test_after_deletion_nobody_is_a_member_and_nothing_can_be_joined(team: Team) -> None:
    pending = invite(team.org, team.owner, "late@example.com", role(team.org, "viewer"))
    link = create_link(team.org, team.owner, role(team.org, "viewer"))
    team.events()

    team.org.delete(team.owner, NOW)

    (deleted,) = team.events()
    assert isinstance(deleted, Organization.OrganizationDeleted) and deleted.name == "Acme"
    assert team.org.get_invitation(pending).status == "cancelled" and not team.org.pending_by_email
    for user in (team.owner, team.admin, team.viewer):
        with pytest.raises(err.NotAMemberError):
            team.org.check_member(user)
    with pytest.raises(err.NotAMemberError):
        team.org.rename(team.owner, "Again", NOW)
    with pytest.raises(err.NotAMemberError):
        team.org.delete(team.owner, NOW)
    with pytest.raises(err.OrganizationDeletedError):
        team.org.accept_invitation(Actor("late", "late@example.com"), pending, uuid4(), NOW)
    with pytest.raises(err.OrganizationDeletedError):
        redeem(team.org, new_actor("newcomer"), link)
    assert team.org.record_invitation_email(Actor("system:mailer"), pending, "x", "<m@x>", NOW) is False
    assert team.events() == []


def test_a_deleted_organization_replays_deleted(team: Team) -> None:
    team.org.delete(team.owner, NOW)
    team.events()
    replayed = project_organization(None, team.history)
    assert replayed is not None and replayed.deleted is True
    assert project_organization(None, team.history[:-1]).deleted is False  # type: ignore[union-attr]


def test_user_can_be_member_of_many_organizations_with_different_roles() -> None:
    user = new_actor()
    own = Organization.create(uuid4(), "Mine", user, uuid4(), NOW)
    other_owner = new_actor("owner")
    other = Organization.create(uuid4(), "Theirs", other_owner, uuid4(), NOW)
    other.accept_invitation(user, invite(other, other_owner, user.email, role(other, "viewer")), uuid4(), NOW)
    assert role_of(own, user) == role(own, "owner")
    assert role_of(other, user) == role(other, "viewer")


def test_member_has_id_user_id_lower_cased_email_name_role_and_join_time(team: Team) -> None:
    user = Actor(f"user-{uuid4().hex}", f"  Mixed.{uuid4().hex[:6]}@Example.COM ", "Mixed Case")
    team.org.invite_member(team.admin, invitation_id := uuid4(), user.email, role(team.org, "viewer"), "n", NOW)
    new_id = uuid4()
    team.org.accept_invitation(user, invitation_id, new_id, NOW + DAY)
    member = team.org.get_member(new_id)
    assert member == Member(
        id=new_id,
        user_id=user.user_id,
        email=user.email.strip().lower(),
        name="Mixed Case",
        role_id=role(team.org, "viewer"),
        joined_at=NOW + DAY,
    )


def test_organization_name_cannot_be_blank() -> None:
    with pytest.raises(err.InvalidValueError):
        Organization.create(uuid4(), "   ", new_actor(), uuid4(), NOW)


# -- roles ---------------------------------------------------------------------
@pytest.mark.parametrize("key", ["owner", "admin", "developer", "viewer"])
def test_system_roles_cannot_be_updated(team: Team, key: str) -> None:
    with pytest.raises(err.SystemRoleImmutableError):
        team.org.update_role(team.owner, role(team.org, key), NOW, description="changed")
    assert team.events() == []


@pytest.mark.parametrize("key", ["owner", "admin", "developer", "viewer"])
def test_system_roles_cannot_be_deleted(team: Team, key: str) -> None:
    with pytest.raises(err.SystemRoleImmutableError):
        team.org.delete_role(team.owner, role(team.org, key), NOW)
    assert team.events() == []


def test_admin_can_create_custom_role(team: Team) -> None:
    role_id = uuid4()
    team.org.create_role(team.admin, role_id, "  Billing   clerk ", " Pays ", ["manage:billing"], NOW)
    [created] = team.events()
    assert isinstance(created, Organization.RoleCreated)
    assert (created.role_id, created.name, created.description) == (role_id, "Billing clerk", "Pays")
    assert team.org.get_role(role_id).system is False


def test_custom_role_can_be_updated(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    assert team.org.update_role(team.admin, role_id, NOW, name="Auditor", permissions=["view:settings"]) is True
    [updated] = team.events()
    assert isinstance(updated, Organization.RoleUpdated)
    assert (updated.name, updated.permissions) == ("Auditor", ["view:settings"])
    assert team.org.get_role(role_id).permissions == {"view:settings"}


def test_unused_custom_role_can_be_deleted(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    team.org.delete_role(team.admin, role_id, NOW)
    assert [type(e) for e in team.events()] == [Organization.RoleDeleted]
    with pytest.raises(err.RoleNotFoundError):
        team.org.get_role(role_id)


def test_role_name_is_unique_case_insensitively(team: Team) -> None:
    custom_role(team, [], name="Auditor")
    with pytest.raises(err.RoleNameTakenError):
        team.org.create_role(team.owner, uuid4(), " AUDITOR ", "", [], NOW)
    assert team.events() == []


@pytest.mark.parametrize("name", ["owner", "ADMIN", " Developer ", "viewer"])
def test_role_name_cannot_be_a_system_role_name(team: Team, name: str) -> None:
    with pytest.raises(err.RoleNameTakenError):
        team.org.create_role(team.owner, uuid4(), name, "", [], NOW)
    assert team.events() == []


def test_role_cannot_be_renamed_to_a_taken_name(team: Team) -> None:
    role_id = custom_role(team, [])
    with pytest.raises(err.RoleNameTakenError):
        team.org.update_role(team.owner, role_id, NOW, name="team LEAD")
    assert team.events() == []


def test_role_can_be_renamed_to_its_own_name_in_another_case(team: Team) -> None:
    role_id = custom_role(team, [], name="Auditor")
    assert team.org.update_role(team.owner, role_id, NOW, name="AUDITOR") is True
    assert team.org.get_role(role_id).name == "AUDITOR"


@pytest.mark.parametrize("permissions", [["manage:everything"], ["view:members", "delete:members"], ["view"]])
def test_unknown_permission_is_refused(team: Team, permissions: list[str]) -> None:
    with pytest.raises(err.InvalidValueError):
        team.org.create_role(team.owner, uuid4(), "Odd", "", permissions, NOW)
    assert team.events() == []


def test_manage_permission_implies_view(team: Team) -> None:
    role_id = uuid4()
    team.org.create_role(team.owner, role_id, "Billing", "", ["manage:billing"], NOW)
    assert team.org.get_role(role_id).permissions == {"manage:billing", "view:billing"}
    team.org.update_role(team.owner, role_id, NOW, permissions=["manage:servers"])
    assert team.org.get_role(role_id).permissions == {"manage:servers", "view:servers"}


def test_role_held_by_a_member_cannot_be_deleted(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    join(team.org, team.owner, role_id)
    team.events()
    with pytest.raises(err.RoleInUseError):
        team.org.delete_role(team.owner, role_id, NOW)
    assert team.events() == []


def test_role_can_be_deleted_once_its_last_member_has_another_role(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    user = join(team.org, team.owner, role_id)
    team.org.change_role(team.owner, member_id(team.org, user), role(team.org, "viewer"), NOW)
    team.org.delete_role(team.owner, role_id, NOW)
    assert isinstance(team.events()[-1], Organization.RoleDeleted)


def test_role_of_a_pending_invitation_cannot_be_deleted(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    invite(team.org, team.owner, new_actor().email, role_id)
    team.events()
    with pytest.raises(err.RoleInUseError):
        team.org.delete_role(team.owner, role_id, NOW)
    assert team.events() == []


def test_role_of_a_live_invite_link_cannot_be_deleted(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    create_link(team.org, team.owner, role_id)
    team.events()
    with pytest.raises(err.RoleInUseError):
        team.org.delete_role(team.owner, role_id, NOW)
    assert team.events() == []


def test_role_of_a_deleted_invite_link_can_be_deleted(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    team.org.delete_invite_link(team.owner, create_link(team.org, team.owner, role_id), NOW)
    team.org.delete_role(team.owner, role_id, NOW)
    assert isinstance(team.events()[-1], Organization.RoleDeleted)


@pytest.mark.parametrize(
    "command",
    [
        lambda org, actor, role_id: org.create_role(actor, uuid4(), "New", "", [], NOW),
        lambda org, actor, role_id: org.update_role(actor, role_id, NOW, name="Renamed"),
        lambda org, actor, role_id: org.delete_role(actor, role_id, NOW),
    ],
    ids=["create", "update", "delete"],
)
def test_developer_cannot_manage_roles(team: Team, command: Callable[..., Any]) -> None:
    role_id = custom_role(team, [])
    with pytest.raises(err.MissingPermissionError) as refused:
        command(team.org, team.developer, role_id)
    assert refused.value.permission == "manage:roles"
    assert team.events() == []


def test_member_can_create_role_within_their_permissions(team: Team) -> None:
    role_id = uuid4()
    team.org.create_role(team.lead, role_id, "Helper", "", ["manage:members"], NOW)
    assert [type(e) for e in team.events()] == [Organization.RoleCreated]


def test_member_cannot_create_role_with_permissions_they_lack(team: Team) -> None:
    with pytest.raises(err.PrivilegeEscalationError):
        team.org.create_role(team.lead, uuid4(), "Payer", "", ["manage:billing"], NOW)
    assert team.events() == []


def test_member_cannot_update_role_with_permissions_they_lack(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    with pytest.raises(err.PrivilegeEscalationError):
        team.org.update_role(team.lead, role_id, NOW, permissions=["manage:billing"])
    assert team.org.get_role(role_id).permissions == {"view:billing"}
    assert team.events() == []


def test_member_cannot_update_role_that_has_permissions_they_lack(team: Team) -> None:
    role_id = custom_role(team, ["manage:billing"])
    with pytest.raises(err.PrivilegeEscalationError):
        team.org.update_role(team.lead, role_id, NOW, name="Renamed")
    assert team.events() == []


def test_update_role_without_change_records_nothing(team: Team) -> None:
    role_id = custom_role(team, ["manage:billing"], name="Payer")
    unchanged = team.org.update_role(team.owner, role_id, NOW, name="Payer", permissions=["manage:billing"])
    assert unchanged is False
    assert team.events() == []


# -- no privilege escalation ---------------------------------------------------
def test_lead_can_invite_with_a_role_within_their_permissions(team: Team) -> None:
    invite(team.org, team.lead, new_actor().email, role(team.org, "viewer"))
    assert [type(e) for e in team.events()] == [Organization.MemberInvited]


def test_lead_cannot_invite_as_admin(team: Team) -> None:
    with pytest.raises(err.PrivilegeEscalationError):
        invite(team.org, team.lead, new_actor().email, role(team.org, "admin"))
    assert team.events() == []


def test_lead_cannot_create_invite_link_for_admin(team: Team) -> None:
    with pytest.raises(err.PrivilegeEscalationError):
        create_link(team.org, team.lead, role(team.org, "admin"))
    assert team.events() == []


def test_lead_cannot_promote_a_member_to_admin(team: Team) -> None:
    with pytest.raises(err.PrivilegeEscalationError):
        team.org.change_role(team.lead, member_id(team.org, team.viewer), role(team.org, "admin"), NOW)
    assert role_of(team.org, team.viewer) == role(team.org, "viewer")
    assert team.events() == []


def test_lead_cannot_promote_themselves_to_admin(team: Team) -> None:
    with pytest.raises(err.PrivilegeEscalationError):
        team.org.change_role(team.lead, member_id(team.org, team.lead), role(team.org, "admin"), NOW)
    assert team.events() == []


@pytest.mark.parametrize("target", ["admin", "developer"])
def test_lead_cannot_change_role_of_member_with_permissions_they_lack(team: Team, target: str) -> None:
    target_id = member_id(team.org, getattr(team, target))
    with pytest.raises(err.PrivilegeEscalationError):
        team.org.change_role(team.lead, target_id, role(team.org, "viewer"), NOW)
    assert team.events() == []


@pytest.mark.parametrize("target", ["admin", "developer"])
def test_lead_cannot_remove_member_with_permissions_they_lack(team: Team, target: str) -> None:
    target_id = member_id(team.org, getattr(team, target))
    with pytest.raises(err.PrivilegeEscalationError):
        team.org.remove_member(team.lead, target_id, NOW)
    assert str(target_id) in team.org.members
    assert team.events() == []


def test_lead_can_remove_member_within_their_permissions(team: Team) -> None:
    team.org.remove_member(team.lead, member_id(team.org, team.viewer), NOW)
    assert [type(e) for e in team.events()] == [Organization.MemberRemoved]
    assert team.org.member_for_user(team.viewer.user_id) is None


def test_lead_cannot_resend_an_admin_invitation(team: Team) -> None:
    invitation_id = invite(team.org, team.owner, new_actor().email, role(team.org, "admin"))
    team.events()
    with pytest.raises(err.PrivilegeEscalationError):
        team.org.resend_invitation(team.lead, invitation_id, new_nonce(), NOW)
    assert team.events() == []


def test_owner_is_exempt_from_the_subset_rule(team: Team) -> None:
    # The Owner holds every permission anyway; a role granting a permission the Owner
    # lacks cannot exist, so "exempt" shows as: the Owner may grant any non-Owner role.
    for key in ("admin", "developer", "viewer"):
        invite(team.org, team.owner, new_actor().email, role(team.org, key))
    team.org.change_role(team.owner, member_id(team.org, team.lead), role(team.org, "admin"), NOW)
    assert [type(e) for e in team.events()] == [Organization.MemberInvited] * 3 + [Organization.RoleChanged]


def test_owner_role_is_not_assignable_by_invitation(team: Team) -> None:
    with pytest.raises(err.OwnerRoleNotAssignableError):
        invite(team.org, team.owner, new_actor().email, role(team.org, "owner"))
    assert team.events() == []


def test_owner_role_is_not_assignable_by_invite_link(team: Team) -> None:
    with pytest.raises(err.OwnerRoleNotAssignableError):
        create_link(team.org, team.owner, role(team.org, "owner"))
    assert team.events() == []


def test_owner_role_is_not_assignable_by_role_change(team: Team) -> None:
    with pytest.raises(err.OwnerRoleNotAssignableError):
        team.org.change_role(team.owner, member_id(team.org, team.admin), role(team.org, "owner"), NOW)
    assert role_of(team.org, team.admin) == role(team.org, "admin")
    assert team.events() == []


# -- invitations ---------------------------------------------------------------
def test_admin_can_invite_member(team: Team) -> None:
    invitation_id = invite(team.org, team.admin, "  New.Person@Example.COM ", role(team.org, "developer"))
    [invited] = team.events()
    assert isinstance(invited, Organization.MemberInvited)
    assert (invited.invitation_id, invited.email) == (invitation_id, "new.person@example.com")
    assert (invited.role_id, invited.expires_at) == (role(team.org, "developer"), NOW + 7 * DAY)
    assert team.org.get_invitation(invitation_id).invited_by == team.admin.user_id
    assert team.org.invitation_status(team.org.get_invitation(invitation_id), NOW) == "pending"


@pytest.mark.parametrize("who", ["viewer", "developer"])
def test_member_without_manage_members_cannot_invite(team: Team, who: str) -> None:
    with pytest.raises(err.MissingPermissionError) as refused:
        invite(team.org, getattr(team, who), new_actor().email, role(team.org, "viewer"))
    assert refused.value.permission == "manage:members"
    assert team.events() == []


@pytest.mark.parametrize("email", ["", "   ", "no-at-sign", "two@@example.com", "a b@example.com", "x@localhost"])
def test_invalid_email_is_refused(team: Team, email: str) -> None:
    with pytest.raises(err.InvalidValueError):
        invite(team.org, team.owner, email, role(team.org, "viewer"))
    assert team.events() == []


@pytest.mark.parametrize("days", [0, 31, -1, True, "7", 7.0, None])
def test_invitation_expiry_must_be_1_to_30_days(team: Team, days: Any) -> None:
    with pytest.raises(err.InvalidValueError):
        invite(team.org, team.owner, new_actor().email, role(team.org, "viewer"), days=days)
    assert team.events() == []


@pytest.mark.parametrize("days", [1, 30])
def test_invitation_expiry_accepts_1_to_30_days(team: Team, days: int) -> None:
    invite(team.org, team.owner, new_actor().email, role(team.org, "viewer"), days=days)
    assert team.events()[0].expires_at == NOW + days * DAY


def test_invitation_expires_in_7_days_by_default(team: Team) -> None:
    team.org.invite_member(team.owner, uuid4(), new_actor().email, role(team.org, "viewer"), new_nonce(), NOW)
    assert team.events()[0].expires_at == NOW + 7 * DAY


def test_cannot_invite_an_existing_member(team: Team) -> None:
    with pytest.raises(err.AlreadyMemberError):
        invite(team.org, team.owner, f" {team.viewer.email.upper()} ", role(team.org, "developer"))
    assert team.events() == []


def test_cannot_invite_an_email_with_a_pending_invitation(team: Team) -> None:
    email = new_actor().email
    invite(team.org, team.owner, email, role(team.org, "viewer"))
    team.events()
    with pytest.raises(err.AlreadyInvitedError):
        invite(team.org, team.admin, email.upper(), role(team.org, "developer"))
    assert team.events() == []


def test_can_invite_again_when_the_previous_invitation_expired(team: Team) -> None:
    email = new_actor().email
    old = invite(team.org, team.owner, email, role(team.org, "viewer"), days=1)
    new = invite(team.org, team.owner, email, role(team.org, "viewer"), now=NOW + 2 * DAY)
    assert team.events()[-1].replaces_invitation_id == old
    assert team.org.get_invitation(old).status == "expired"
    assert team.org.invitation_status(team.org.get_invitation(new), NOW + 2 * DAY) == "pending"


def test_closed_invitations_whose_tokens_expired_leave_the_state_with_the_first_invitation_of_a_later_day(
    team: Team,
) -> None:
    viewer = role(team.org, "viewer")
    accepted = invite(team.org, team.owner, (user := new_actor()).email, viewer, days=1)
    team.org.accept_invitation(user, accepted, uuid4(), NOW)
    cancelled = invite(team.org, team.owner, new_actor().email, viewer, days=3)
    team.org.cancel_invitation(team.owner, cancelled, NOW)
    pending = invite(team.org, team.owner, new_actor().email, viewer, days=1)  # expired, but still pending
    same_day = invite(team.org, team.owner, new_actor().email, viewer, now=NOW + 2 * DAY)
    assert accepted not in [i.id for i in team.org.invitations.values()]  # its token expired a day ago
    assert {cancelled, pending, same_day} <= {i.id for i in team.org.invitations.values()}
    invite(team.org, team.owner, new_actor().email, viewer, now=NOW + 2 * DAY + timedelta(hours=1))
    assert cancelled in {i.id for i in team.org.invitations.values()}  # looked for once a day only
    invite(team.org, team.owner, new_actor().email, viewer, now=NOW + 4 * DAY)
    assert cancelled not in {i.id for i in team.org.invitations.values()}
    assert pending in {i.id for i in team.org.invitations.values()}  # an open one is never forgotten
    with pytest.raises(err.InvitationNotFoundError):
        team.org.cancel_invitation(team.owner, accepted, NOW + 4 * DAY)


def test_who_used_a_link_is_forgotten_once_it_is_deleted_or_long_expired(team: Team) -> None:
    viewer = role(team.org, "viewer")
    deleted, expiring, live = (create_link(team.org, team.owner, viewer, days=d) for d in (7, 1, 30))
    for link in (deleted, expiring, live):
        redeem(team.org, new_actor(), link)
    team.org.delete_invite_link(team.owner, deleted, NOW)
    assert {key_of(deleted), key_of(expiring)} <= set(team.org.redemptions)  # looked for once a day
    invite(team.org, team.owner, new_actor().email, viewer, now=NOW + 2 * DAY)  # the day's first invitation
    assert key_of(live) in team.org.redemptions
    assert key_of(expiring) not in team.org.redemptions and key_of(deleted) not in team.org.redemptions
    with pytest.raises(err.InviteLinkExpiredError):
        redeem(team.org, new_actor(), expiring, now=NOW + 2 * DAY)
    assert key_of(deleted) in team.org.links  # deleted, not yet expired: its holders are told it was deleted
    invite(team.org, team.owner, new_actor().email, viewer, now=NOW + 8 * DAY)
    assert key_of(deleted) not in team.org.links and key_of(expiring) in team.org.links  # that one holds its role


def test_invitee_accepts_and_becomes_member(team: Team) -> None:
    user = new_actor()
    invitation_id = invite(team.org, team.admin, user.email.upper(), role(team.org, "developer"))
    team.org.accept_invitation(user, invitation_id, new_id := uuid4(), NOW + DAY)
    accepted = team.events()[-1]
    assert isinstance(accepted, Organization.InviteAccepted)
    assert (accepted.member_id, accepted.user_id, accepted.role_id) == (
        new_id,
        user.user_id,
        role(team.org, "developer"),
    )
    assert team.org.invitation_status(team.org.get_invitation(invitation_id), NOW + DAY) == "accepted"
    assert role_of(team.org, user) == role(team.org, "developer")


def test_accepting_with_another_email_is_refused_and_invitation_stays_pending(team: Team) -> None:
    invitee = new_actor()
    invitation_id = invite(team.org, team.owner, invitee.email, role(team.org, "viewer"))
    team.events()
    with pytest.raises(err.InvitationEmailMismatchError):
        team.org.accept_invitation(new_actor(), invitation_id, uuid4(), NOW)
    assert team.events() == []
    assert team.org.invitation_status(team.org.get_invitation(invitation_id), NOW) == "pending"
    team.org.accept_invitation(invitee, invitation_id, uuid4(), NOW)
    assert isinstance(team.events()[-1], Organization.InviteAccepted)


def test_expired_invitation_cannot_be_accepted(team: Team) -> None:
    user = new_actor()
    invitation_id = invite(team.org, team.owner, user.email, role(team.org, "viewer"), days=1)
    team.events()
    with pytest.raises(err.InvitationExpiredError):
        team.org.accept_invitation(user, invitation_id, uuid4(), NOW + DAY)
    assert team.events() == []


def test_cancelled_invitation_cannot_be_accepted(team: Team) -> None:
    user = new_actor()
    invitation_id = invite(team.org, team.owner, user.email, role(team.org, "viewer"))
    team.org.cancel_invitation(team.admin, invitation_id, NOW)
    assert isinstance(team.events()[-1], Organization.InvitationCancelled)
    with pytest.raises(err.InvitationCancelledError):
        team.org.accept_invitation(user, invitation_id, uuid4(), NOW)
    assert team.events() == []


def test_accepted_invitation_cannot_be_accepted_again(team: Team) -> None:
    user = new_actor()
    invitation_id = invite(team.org, team.owner, user.email, role(team.org, "viewer"))
    team.org.accept_invitation(user, invitation_id, uuid4(), NOW)
    team.events()
    with pytest.raises(err.InvitationAlreadyAcceptedError):
        team.org.accept_invitation(user, invitation_id, uuid4(), NOW)
    assert team.events() == []


@pytest.mark.parametrize("close", ["cancel", "accept", "replace"])
def test_cannot_cancel_a_non_pending_invitation(team: Team, close: str) -> None:
    user = new_actor()
    invitation_id = invite(team.org, team.owner, user.email, role(team.org, "viewer"), days=1)
    if close == "cancel":
        team.org.cancel_invitation(team.owner, invitation_id, NOW)
    elif close == "accept":
        team.org.accept_invitation(user, invitation_id, uuid4(), NOW)
    else:
        invite(team.org, team.owner, user.email, role(team.org, "viewer"), now=NOW + 2 * DAY)
    team.events()
    with pytest.raises(err.InvitationNotPendingError):
        team.org.cancel_invitation(team.owner, invitation_id, NOW + 2 * DAY)
    assert team.events() == []


def test_expired_invitation_can_be_cancelled(team: Team) -> None:
    invitation_id = invite(team.org, team.owner, new_actor().email, role(team.org, "viewer"), days=1)
    team.org.cancel_invitation(team.owner, invitation_id, NOW + 5 * DAY)
    assert isinstance(team.events()[-1], Organization.InvitationCancelled)
    assert team.org.invitation_status(team.org.get_invitation(invitation_id), NOW + 5 * DAY) == "cancelled"


def test_expired_invitation_can_be_resent_and_then_accepted(team: Team) -> None:
    user = new_actor()
    invitation_id = invite(team.org, team.owner, user.email, role(team.org, "viewer"), days=1)
    later = NOW + 5 * DAY
    team.org.resend_invitation(team.owner, invitation_id, new_nonce(), later)
    team.org.accept_invitation(user, invitation_id, uuid4(), later)
    assert [type(e) for e in team.events()[-2:]] == [Organization.InvitationResent, Organization.InviteAccepted]


def test_resend_gives_a_new_nonce_and_a_new_expiry(team: Team) -> None:
    invitation_id = invite(team.org, team.owner, new_actor().email, role(team.org, "viewer"), days=3)
    old_nonce = team.org.get_invitation(invitation_id).token_nonce
    team.org.resend_invitation(team.admin, invitation_id, nonce := new_nonce(), NOW + DAY)
    resent = team.events()[-1]
    assert isinstance(resent, Organization.InvitationResent)
    assert (resent.token_nonce, resent.expires_at) == (nonce, NOW + 4 * DAY)
    assert team.org.get_invitation(invitation_id).token_nonce == nonce != old_nonce


def test_cannot_resend_a_non_pending_invitation(team: Team) -> None:
    invitation_id = invite(team.org, team.owner, new_actor().email, role(team.org, "viewer"))
    team.org.cancel_invitation(team.owner, invitation_id, NOW)
    team.events()
    with pytest.raises(err.InvitationNotPendingError):
        team.org.resend_invitation(team.owner, invitation_id, new_nonce(), NOW)
    assert team.events() == []


def test_removed_member_can_be_invited_again(team: Team) -> None:
    team.org.remove_member(team.admin, member_id(team.org, team.viewer), NOW)
    invitation_id = invite(team.org, team.admin, team.viewer.email, role(team.org, "developer"))
    team.org.accept_invitation(team.viewer, invitation_id, uuid4(), NOW)
    assert role_of(team.org, team.viewer) == role(team.org, "developer")


def test_member_who_left_can_be_invited_again(team: Team) -> None:
    team.org.leave(team.developer, NOW)
    invitation_id = invite(team.org, team.admin, team.developer.email, role(team.org, "viewer"))
    team.org.accept_invitation(team.developer, invitation_id, uuid4(), NOW)
    assert role_of(team.org, team.developer) == role(team.org, "viewer")


def test_pending_invitations_are_capped(team: Team) -> None:
    for _ in range(3):
        team.org.invite_member(team.owner, uuid4(), new_actor().email, role(team.org, "viewer"), "n", NOW, max_pending=3)
    team.events()
    with pytest.raises(err.TooManyPendingInvitationsError):
        team.org.invite_member(team.owner, uuid4(), new_actor().email, role(team.org, "viewer"), "n", NOW, max_pending=3)
    assert team.events() == []


def test_invitation_status_reports_expired_without_an_event(team: Team) -> None:
    invitation_id = invite(team.org, team.owner, new_actor().email, role(team.org, "viewer"), days=2)
    team.events()
    invitation = team.org.get_invitation(invitation_id)
    assert team.org.invitation_status(invitation, NOW + 2 * DAY - timedelta(seconds=1)) == "pending"
    assert team.org.invitation_status(invitation, NOW + 2 * DAY) == "expired"
    assert team.events() == []


@pytest.mark.parametrize(
    "command",
    [
        lambda org, actor: org.resend_invitation(actor, uuid4(), new_nonce(), NOW),
        lambda org, actor: org.cancel_invitation(actor, uuid4(), NOW),
        lambda org, actor: org.accept_invitation(new_actor(), uuid4(), uuid4(), NOW),
    ],
    ids=["resend", "cancel", "accept"],
)
def test_unknown_invitation_is_not_found(team: Team, command: Callable[..., Any]) -> None:
    with pytest.raises(err.InvitationNotFoundError):
        command(team.org, team.owner)
    assert team.events() == []


# -- invite links --------------------------------------------------------------
def test_admin_can_create_invite_link(team: Team) -> None:
    link_id = uuid4()
    team.org.create_invite_link(team.admin, link_id, role(team.org, "developer"), nonce := new_nonce(), NOW)
    [created] = team.events()
    assert isinstance(created, Organization.InviteLinkCreated)
    assert (created.link_id, created.role_id, created.code_nonce) == (link_id, role(team.org, "developer"), nonce)
    assert (created.max_uses, created.expires_at) == (0, NOW + 7 * DAY)
    assert team.org.get_invite_link(link_id).use_count == 0


def test_viewer_cannot_create_invite_link(team: Team) -> None:
    with pytest.raises(err.MissingPermissionError):
        create_link(team.org, team.viewer, role(team.org, "viewer"))
    assert team.events() == []


def test_viewer_cannot_delete_invite_link(team: Team) -> None:
    link_id = create_link(team.org, team.owner, role(team.org, "viewer"))
    team.events()
    with pytest.raises(err.MissingPermissionError):
        team.org.delete_invite_link(team.viewer, link_id, NOW)
    assert team.events() == []


def test_link_with_zero_max_uses_is_unlimited(team: Team) -> None:
    link_id = create_link(team.org, team.owner, role(team.org, "viewer"), max_uses=0)
    for _ in range(5):
        redeem(team.org, new_actor(), link_id)
    assert team.org.get_invite_link(link_id).use_count == 5


@pytest.mark.parametrize("max_uses", [-1, True, False, 1.0, "3", None])
def test_invalid_max_uses_is_refused(team: Team, max_uses: Any) -> None:
    with pytest.raises(err.InvalidValueError):
        create_link(team.org, team.owner, role(team.org, "viewer"), max_uses=max_uses)
    assert team.events() == []


@pytest.mark.parametrize("days", [0, 366, -1, True, "7"])
def test_link_expiry_must_be_1_to_365_days(team: Team, days: Any) -> None:
    with pytest.raises(err.InvalidValueError):
        create_link(team.org, team.owner, role(team.org, "viewer"), days=days)
    assert team.events() == []


@pytest.mark.parametrize("days", [1, 365])
def test_link_expiry_accepts_1_to_365_days(team: Team, days: int) -> None:
    create_link(team.org, team.owner, role(team.org, "viewer"), days=days)
    assert team.events()[0].expires_at == NOW + days * DAY


def test_redeeming_a_link_joins_with_its_role_and_counts_the_use(team: Team) -> None:
    user = new_actor()
    link_id = create_link(team.org, team.owner, role(team.org, "developer"), max_uses=2)
    redeem(team.org, user, link_id)
    joined = team.events()[-1]
    assert isinstance(joined, Organization.MemberJoinedByLink)
    assert (joined.link_id, joined.user_id, joined.email) == (link_id, user.user_id, user.email)
    assert role_of(team.org, user) == role(team.org, "developer")
    assert team.org.get_invite_link(link_id).use_count == 1


def test_user_redeems_a_link_at_most_once(team: Team) -> None:
    user = new_actor()
    link_id = create_link(team.org, team.owner, role(team.org, "viewer"))
    redeem(team.org, user, link_id)
    team.org.leave(user, NOW)
    team.events()
    with pytest.raises(err.InviteLinkAlreadyUsedError):
        redeem(team.org, user, link_id)
    assert team.events() == []


def test_expired_link_is_refused(team: Team) -> None:
    link_id = create_link(team.org, team.owner, role(team.org, "viewer"), days=1)
    team.events()
    with pytest.raises(err.InviteLinkExpiredError):
        redeem(team.org, new_actor(), link_id, now=NOW + DAY)
    assert team.events() == []


def test_deleted_link_is_refused(team: Team) -> None:
    link_id = create_link(team.org, team.owner, role(team.org, "viewer"))
    team.org.delete_invite_link(team.admin, link_id, NOW)
    assert isinstance(team.events()[-1], Organization.InviteLinkDeleted)
    with pytest.raises(err.InviteLinkDeletedError):
        redeem(team.org, new_actor(), link_id)
    assert team.events() == []


def test_used_up_link_is_refused(team: Team) -> None:
    link_id = create_link(team.org, team.owner, role(team.org, "viewer"), max_uses=1)
    redeem(team.org, new_actor(), link_id)
    team.events()
    with pytest.raises(err.InviteLinkUsedUpError):
        redeem(team.org, new_actor(), link_id)
    assert team.org.get_invite_link(link_id).use_count == 1
    assert team.events() == []


def test_member_cannot_redeem_a_link(team: Team) -> None:
    link_id = create_link(team.org, team.owner, role(team.org, "admin"))
    team.events()
    with pytest.raises(err.AlreadyMemberError):
        redeem(team.org, team.viewer, link_id)
    assert role_of(team.org, team.viewer) == role(team.org, "viewer")
    assert team.events() == []


def test_redeeming_a_link_cancels_the_users_pending_invitation(team: Team) -> None:
    user = new_actor()
    invitation_id = invite(team.org, team.owner, user.email, role(team.org, "viewer"))
    redeem(team.org, user, create_link(team.org, team.owner, role(team.org, "developer")))
    assert team.events()[-1].cancelled_invitation_id == invitation_id
    assert team.org.invitation_status(team.org.get_invitation(invitation_id), NOW) == "cancelled"
    assert user.email not in team.org.pending_by_email


@pytest.mark.parametrize(
    "command",
    [
        lambda org, actor: org.delete_invite_link(actor, uuid4(), NOW),
        lambda org, actor: org.redeem_invite_link(new_actor(), uuid4(), uuid4(), NOW),
    ],
    ids=["delete", "redeem"],
)
def test_unknown_invite_link_is_not_found(team: Team, command: Callable[..., Any]) -> None:
    with pytest.raises(err.InviteLinkNotFoundError):
        command(team.org, team.owner)
    assert team.events() == []


# -- members -------------------------------------------------------------------
def test_admin_can_change_a_members_role(team: Team) -> None:
    target_id = member_id(team.org, team.viewer)
    assert team.org.change_role(team.admin, target_id, role(team.org, "developer"), NOW) is True
    [changed] = team.events()
    assert isinstance(changed, Organization.RoleChanged)
    assert (changed.member_id, changed.email) == (target_id, team.viewer.email)
    assert (changed.old_role_id, changed.role_id) == (role(team.org, "viewer"), role(team.org, "developer"))
    assert role_of(team.org, team.viewer) == role(team.org, "developer")


def test_changing_to_the_same_role_records_nothing(team: Team) -> None:
    target_id = member_id(team.org, team.viewer)
    assert team.org.change_role(team.admin, target_id, role(team.org, "viewer"), NOW) is False
    assert team.events() == []


def test_viewer_cannot_change_roles(team: Team) -> None:
    with pytest.raises(err.MissingPermissionError) as refused:
        team.org.change_role(team.viewer, member_id(team.org, team.developer), role(team.org, "viewer"), NOW)
    assert refused.value.permission == "manage:members"
    assert team.events() == []


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_owners_role_cannot_change(team: Team, who: str) -> None:
    with pytest.raises(err.OwnerRoleCannotChangeError):
        team.org.change_role(getattr(team, who), member_id(team.org, team.owner), role(team.org, "admin"), NOW)
    assert role_of(team.org, team.owner) == role(team.org, "owner")
    assert team.events() == []


def test_admin_can_remove_a_member(team: Team) -> None:
    target_id = member_id(team.org, team.developer)
    team.org.remove_member(team.admin, target_id, NOW)
    [removed] = team.events()
    assert isinstance(removed, Organization.MemberRemoved)
    assert (removed.member_id, removed.user_id, removed.email) == (
        target_id,
        team.developer.user_id,
        team.developer.email,
    )
    assert str(target_id) not in team.org.members


def test_owner_cannot_be_removed(team: Team) -> None:
    with pytest.raises(err.OwnerCannotBeRemovedError):
        team.org.remove_member(team.admin, member_id(team.org, team.owner), NOW)
    assert team.events() == []


def test_viewer_cannot_remove_members(team: Team) -> None:
    with pytest.raises(err.MissingPermissionError):
        team.org.remove_member(team.viewer, member_id(team.org, team.developer), NOW)
    assert team.events() == []


def test_cannot_remove_yourself(team: Team) -> None:
    with pytest.raises(err.CannotRemoveYourselfError):
        team.org.remove_member(team.admin, member_id(team.org, team.admin), NOW)
    assert team.org.member_for_user(team.admin.user_id) is not None
    assert team.events() == []


def test_owner_cannot_leave(team: Team) -> None:
    with pytest.raises(err.OwnerCannotLeaveError):
        team.org.leave(team.owner, NOW)
    assert team.events() == []


@pytest.mark.parametrize("who", ["admin", "developer", "viewer", "lead"])
def test_other_members_can_leave(team: Team, who: str) -> None:
    user = getattr(team, who)
    left_id = team.org.leave(user, NOW)
    [left] = team.events()
    assert isinstance(left, Organization.MemberLeft)
    assert (left.member_id, left.user_id) == (left_id, user.user_id)
    assert team.org.member_for_user(user.user_id) is None


def test_owner_can_transfer_ownership_in_one_event(team: Team) -> None:
    old_owner_id, new_owner_id = member_id(team.org, team.owner), member_id(team.org, team.developer)
    team.org.transfer_ownership(team.owner, new_owner_id, NOW)
    [transferred] = team.events()
    assert isinstance(transferred, Organization.OwnershipTransferred)
    assert (transferred.from_member_id, transferred.to_member_id) == (old_owner_id, new_owner_id)
    assert transferred.previous_role_id == role(team.org, "developer")
    assert role_of(team.org, team.developer) == role(team.org, "owner")
    assert role_of(team.org, team.owner) == role(team.org, "admin")
    assert team.org.owner_member_id == str(new_owner_id)


def test_former_owner_can_leave_after_transfer(team: Team) -> None:
    team.org.transfer_ownership(team.owner, member_id(team.org, team.admin), NOW)
    team.org.leave(team.owner, NOW)
    with pytest.raises(err.OwnerCannotLeaveError):
        team.org.leave(team.admin, NOW)


def test_admin_cannot_transfer_ownership(team: Team) -> None:
    with pytest.raises(err.OwnerOnlyError):
        team.org.transfer_ownership(team.admin, member_id(team.org, team.viewer), NOW)
    assert team.events() == []


def test_ownership_cannot_go_to_a_non_member(team: Team) -> None:
    with pytest.raises(err.MemberNotFoundError):
        team.org.transfer_ownership(team.owner, uuid4(), NOW)
    assert team.events() == []


def test_ownership_cannot_go_to_the_owner(team: Team) -> None:
    with pytest.raises(err.AlreadyOwnerError):
        team.org.transfer_ownership(team.owner, member_id(team.org, team.owner), NOW)
    assert team.events() == []


@pytest.mark.parametrize(
    "command",
    [
        lambda t, u: invite(t.org, u, new_actor().email, role(t.org, "viewer")),
        lambda t, u: create_link(t.org, u, role(t.org, "viewer")),
        lambda t, u: t.org.change_role(u, member_id(t.org, t.viewer), role(t.org, "developer"), NOW),
        lambda t, u: t.org.remove_member(u, member_id(t.org, t.viewer), NOW),
        lambda t, u: t.org.leave(u, NOW),
        lambda t, u: t.org.transfer_ownership(u, member_id(t.org, t.viewer), NOW),
        lambda t, u: t.org.create_role(u, uuid4(), "Sneaky", "", [], NOW),
        lambda t, u: t.org.delete_role(u, t.lead_role, NOW),
    ],
    ids=["invite", "link", "change_role", "remove", "leave", "transfer", "create_role", "delete_role"],
)
def test_non_member_is_refused(team: Team, command: Callable[[Team, Actor], Any]) -> None:
    with pytest.raises(err.NotAMemberError):
        command(team, new_actor("stranger"))
    assert team.events() == []


@pytest.mark.parametrize(
    "command",
    [
        lambda t: t.org.change_role(t.owner, uuid4(), role(t.org, "viewer"), NOW),
        lambda t: t.org.remove_member(t.owner, uuid4(), NOW),
    ],
    ids=["change_role", "remove"],
)
def test_unknown_member_is_not_found(team: Team, command: Callable[[Team], Any]) -> None:
    with pytest.raises(err.MemberNotFoundError):
        command(team)
    assert team.events() == []


@pytest.mark.parametrize(
    "command",
    [
        lambda t, r: invite(t.org, t.owner, new_actor().email, r),
        lambda t, r: create_link(t.org, t.owner, r),
        lambda t, r: t.org.change_role(t.owner, member_id(t.org, t.viewer), r, NOW),
        lambda t, r: t.org.update_role(t.owner, r, NOW, name="Renamed"),
        lambda t, r: t.org.delete_role(t.owner, r, NOW),
    ],
    ids=["invite", "link", "change_role", "update_role", "delete_role"],
)
def test_unknown_role_is_not_found(team: Team, command: Callable[[Team, UUID], Any]) -> None:
    with pytest.raises(err.RoleNotFoundError):
        command(team, uuid4())
    assert team.events() == []


def test_deleted_role_cannot_be_assigned(team: Team) -> None:
    role_id = custom_role(team, ["view:billing"])
    team.org.delete_role(team.owner, role_id, NOW)
    team.events()
    with pytest.raises(err.RoleNotFoundError):
        team.org.change_role(team.owner, member_id(team.org, team.viewer), role_id, NOW)
    assert team.events() == []


# -- events --------------------------------------------------------------------
def run_scenario(team: Team) -> list[tuple[Actor, datetime, Any]]:
    """One command of each kind, each at its own time: (actor, time, events recorded)."""
    org, invitee, linked = team.org, new_actor(), new_actor()
    steps: list[tuple[Actor, Callable[[datetime], Any]]] = [
        (team.admin, lambda t: org.invite_member(team.admin, inv, invitee.email, role(org, "viewer"), "n1", t)),
        (team.admin, lambda t: org.resend_invitation(team.admin, inv, "n2", t)),
        (invitee, lambda t: org.accept_invitation(invitee, inv, uuid4(), t)),
        (team.lead, lambda t: org.create_invite_link(team.lead, link, role(org, "viewer"), "n3", t)),
        (linked, lambda t: org.redeem_invite_link(linked, link, uuid4(), t)),
        (team.lead, lambda t: org.delete_invite_link(team.lead, link, t)),
        (team.admin, lambda t: org.change_role(team.admin, member_id(org, invitee), role(org, "developer"), t)),
        (team.admin, lambda t: org.remove_member(team.admin, member_id(org, invitee), t)),
        (linked, lambda t: org.leave(linked, t)),
        (team.owner, lambda t: org.create_role(team.owner, new_role, "Temp", "", ["view:billing"], t)),
        (team.owner, lambda t: org.update_role(team.owner, new_role, t, description="Temporary")),
        (team.owner, lambda t: org.delete_role(team.owner, new_role, t)),
        (team.admin, lambda t: org.invite_member(team.admin, inv2, new_actor().email, role(org, "viewer"), "n4", t)),
        (team.admin, lambda t: org.cancel_invitation(team.admin, inv2, t)),
        (team.owner, lambda t: org.transfer_ownership(team.owner, member_id(org, team.admin), t)),
    ]
    inv, inv2, link, new_role = uuid4(), uuid4(), uuid4(), uuid4()
    done = []
    for minutes, (actor, command) in enumerate(steps, start=1):
        when = NOW + timedelta(minutes=minutes)
        command(when)
        done.append((actor, when, team.events()))
    return done


def test_every_event_carries_the_actor(team: Team) -> None:
    for actor, _, events in run_scenario(team):
        assert events, "every step records an event"
        for event in events:
            assert (event.actor_id, event.actor_email) == (actor.user_id, actor.email), type(event).__name__


def test_every_event_carries_the_actor_email_lower_cased() -> None:
    creator = Actor(f"user-{uuid4().hex}", "  Creator@Example.COM ", "Creator")
    org = Organization.create(uuid4(), "Acme", creator, uuid4(), NOW)
    assert {(e.actor_id, e.actor_email) for e in org.collect_events()} == {(creator.user_id, "creator@example.com")}


def test_event_times_come_from_the_caller(team: Team) -> None:
    for _, when, events in run_scenario(team):
        assert [e.timestamp for e in events] == [when] * len(events)
    later = NOW + 9 * DAY
    org = Organization.create(uuid4(), "Acme", new_actor(), uuid4(), later)
    assert [e.timestamp for e in org.collect_events()] == [later, later]


def test_replaying_the_events_rebuilds_an_equal_aggregate(team: Team) -> None:
    run_scenario(team)
    redeem(team.org, new_actor(), create_link(team.org, team.admin, team.lead_role, max_uses=3))
    team.events()
    replayed = project_organization(None, team.history)
    assert replayed == team.org
    assert replayed.version == team.org.version == len(team.history)
