"""The Organization aggregate: members, invitations, invite links and roles.

Public methods check the rules (the `check_*` guards, which ask `membership.authorization`
for the one authorization rule) and raise `membership.exceptions` errors; only then do they
trigger an event (`membership.events`), whose `apply` assigns state. Everything
non-deterministic (ids, nonces, the current time) is computed by the caller and carried in
the event. State is frozen records (`membership.state`), plus small indexes that keep every
command O(1) in the number of members.

This module is longer than the others (about 550 lines): it is the one aggregate's twenty
commands with the guards and queries they share, and splitting them would put a rule's check
and its use in different files. What the commands take from outside is checked in
`membership.inputs`; what each event changes is in `membership.events`.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from membership import authorization, events, state
from membership import exceptions as err
from membership.inputs import (
    DEFAULT_EXPIRES_IN_DAYS,
    INVITATION_DAYS,
    INVITE_LINK_DAYS,
    MAX_DESCRIPTION_LENGTH,
    Actor,
    check_days,
    check_max_uses,
    check_organization_name,
    check_role_text,
    normalize_email,
    person_name,
    stamp,
    validate_email,
)
from membership.permissions import (
    ADMIN,
    MANAGE_MEMBERS,
    MANAGE_ROLES,
    MANAGE_SETTINGS,
    OWNER,
    SYSTEM_ROLES,
    closure,
    unknown_permissions,
)
from membership.state import (
    Invitation,
    InvitationStatus,
    InviteLink,
    Member,
    MemberTable,
    Role,
    key_of,
    role_as_dict,
    role_from_dict,
)
from membership.text import check_text


def system_role_id(organization_id: UUID, key: str) -> UUID:
    """System roles get ids derived from the organization, stable across replays."""
    return uuid5(NAMESPACE_URL, f"/organizations/{organization_id}/roles/{key}")


class Organization(Aggregate):
    """One tenant: its members, pending invitations, invite links and roles."""

    TOPIC = "membership:Organization"
    # Snapshots of version 1 held dicts, not records.
    class_version = 2
    upcast_v1_v2 = staticmethod(state.upcast_v1_v2)
    Snapshot = state.OrganizationSnapshot  # members as columns, indexes rebuilt on load

    # Every event, as Organization.<Name>: the library registers their pinned topics from here,
    # and imported (not assigned) they are types too.
    from membership.events import (
        Created,
        Event,
        EventSkipped,
        InvitationCancelled,
        InvitationEmailFailed,
        InvitationEmailSent,
        InvitationResent,
        InviteAccepted,
        InviteLinkCreated,
        InviteLinkDeleted,
        MemberInvited,
        MemberJoined,
        MemberJoinedByLink,
        MemberLeft,
        MemberRemoved,
        OrganizationDeleted,
        OrganizationRenamed,
        OwnershipTransferred,
        PersonErased,
        RoleChanged,
        RoleCreated,
        RoleDeleted,
        RoleUpdated,
    )

    deleted = False  # a class default: states and snapshots from before deletion existed lack the attribute

    def __init__(self, name: str, roles: list[dict[str, Any]]) -> None:
        """Runs when the Created event is applied (on creation and on every replay)."""
        self.name = name
        # Records by their id as text; the indexes hold those keys.
        self.roles: dict[str, Role] = {role["id"]: role_from_dict(role) for role in roles}
        # A MemberTable (loaded from a snapshot, rows become records when read); a dict in states loaded from
        # snapshots of the library's Snapshot class, which took it as it was.
        self.members: MutableMapping[str, Member] = MemberTable()
        self.member_by_user: dict[str, str] = {}
        self.member_by_email: dict[str, str] = {}
        self.role_member_counts: dict[str, int] = {}
        self.owner_member_id = ""  # set by the creator's MemberJoined, in the same save
        self.invitations: dict[str, Invitation] = {}
        self.pending_by_email: dict[str, str] = {}
        self.links: dict[str, InviteLink] = {}
        self.redemptions: dict[str, dict[str, str]] = {}  # link -> user id -> member, who joined by it

    # -- creation ------------------------------------------------------------
    @classmethod
    def create(
        cls, organization_id: UUID, name: str, owner: Actor, owner_member_id: UUID, now: datetime
    ) -> Organization:
        """A new organization whose creator is its only member, the Owner."""
        name = check_organization_name(name)
        roles = [
            role_as_dict(Role(system_role_id(organization_id, r.key), r.name, r.description, r.permissions, r.key))
            for r in SYSTEM_ROLES
        ]
        org = cls._create(cls.Created, id=organization_id, timestamp=now, name=name, roles=roles, **stamp(owner))
        org._trigger(
            cls.MemberJoined,
            owner,
            now,
            member_id=owner_member_id,
            user_id=owner.user_id,
            email=validate_email(owner.email),
            name=person_name(owner),
            role_id=system_role_id(organization_id, OWNER.key),
        )
        return org

    def rename(self, actor: Actor, name: str, now: datetime) -> bool:
        """Returns False, recording nothing, when the name does not change (manage:settings)."""
        self.check_permission(actor, MANAGE_SETTINGS)
        name = check_organization_name(name)
        if name == self.name:
            return False
        self._trigger(self.OrganizationRenamed, actor, now, name=name, old_name=self.name)
        return True

    def delete(self, actor: Actor, now: datetime) -> None:
        """Owner only. Members lose access and pending invitations are cancelled; the events stay."""
        if not self.is_owner(self.check_member(actor)):
            raise err.OwnerOnlyError("Only the Owner can delete the organization.")
        self._trigger(self.OrganizationDeleted, actor, now, name=self.name)

    # -- invitations ---------------------------------------------------------
    def invite_member(
        self,
        actor: Actor,
        invitation_id: UUID,
        email: str,
        role_id: UUID,
        token_nonce: str,
        now: datetime,
        expires_in_days: int = DEFAULT_EXPIRES_IN_DAYS,
        max_pending: int = 1000,
    ) -> None:
        inviter = self.check_permission(actor, MANAGE_MEMBERS)
        email = validate_email(email)
        check_days(expires_in_days, INVITATION_DAYS)
        self.check_can_assign(inviter, role_id)
        self.check_not_member(email)
        replaced = self._pending_invitation_for(email)
        if replaced is not None and not self.is_expired(replaced, now):
            raise err.AlreadyInvitedError(f"{email} already has a pending invitation.")
        if len(self.pending_by_email) - (replaced is not None) >= max_pending:
            raise err.TooManyPendingInvitationsError(
                f"This organization has {max_pending} pending invitations, the most allowed. "
                "Cancel expired or unneeded invitations, or use an invite link."
            )
        self._trigger(
            self.MemberInvited,
            actor,
            now,
            invitation_id=invitation_id,
            email=email,
            role_id=role_id,
            expires_at=now + timedelta(days=expires_in_days),
            expires_in_days=expires_in_days,
            token_nonce=token_nonce,
            replaces_invitation_id=None if replaced is None else replaced.id,
        )

    def resend_invitation(
        self, actor: Actor, invitation_id: UUID, token_nonce: str, now: datetime, expires_in_days: int | None = None
    ) -> None:
        """A new token and a new expiry; the old token stops working."""
        inviter = self.check_permission(actor, MANAGE_MEMBERS)
        invitation = self.get_invitation(invitation_id)
        self.check_invitation_is_pending(invitation)
        self.check_can_assign(inviter, invitation.role_id)
        days = invitation.expires_in_days if expires_in_days is None else expires_in_days
        check_days(days, INVITATION_DAYS)
        self._trigger(
            self.InvitationResent,
            actor,
            now,
            invitation_id=invitation_id,
            expires_at=now + timedelta(days=days),
            token_nonce=token_nonce,
        )

    def cancel_invitation(self, actor: Actor, invitation_id: UUID, now: datetime) -> None:
        inviter = self.check_permission(actor, MANAGE_MEMBERS)
        invitation = self.get_invitation(invitation_id)
        self.check_invitation_is_pending(invitation)
        self.check_can_assign(inviter, invitation.role_id)
        self._trigger(self.InvitationCancelled, actor, now, invitation_id=invitation_id, email=invitation.email)

    def accept_invitation(self, user: Actor, invitation_id: UUID, member_id: UUID, now: datetime) -> None:
        """`user` has already proven they hold the invitation's current token."""
        self.check_not_deleted()
        invitation = self.get_invitation(invitation_id)
        self.check_invitation_usable(invitation, now)
        if user.email_verified is False:
            raise err.EmailNotVerifiedError(
                "Your identity provider says your e-mail address is not verified: verify it there, then accept."
            )
        email = normalize_email(user.email)
        if email != invitation.email:
            raise err.InvitationEmailMismatchError(
                "This invitation was sent to a different e-mail address than the one you are signed in with."
            )
        self.check_not_member(email, user.user_id)
        self._trigger(
            self.InviteAccepted,
            user,
            now,
            invitation_id=invitation_id,
            member_id=member_id,
            user_id=user.user_id,
            email=email,
            name=person_name(user),
            role_id=invitation.role_id,
        )

    def record_invitation_email(
        self, mailer: Actor, invitation_id: UUID, token_nonce: str, message_id: str, now: datetime, failure: str = ""
    ) -> bool:
        """Record what became of the e-mail for one token; False (nothing recorded) if already
        recorded, if the token was replaced since (its successor has an e-mail of its own) or if the
        organization was deleted."""
        invitation = self.get_invitation(invitation_id)
        if self.deleted or invitation.token_nonce != token_nonce or invitation.email_status is not None:
            return False
        event, details = (
            (self.InvitationEmailFailed, {"reason": failure[:500]}) if failure else (self.InvitationEmailSent, {})
        )
        self._trigger(
            event, mailer, now, invitation_id=invitation_id, email=invitation.email, message_id=message_id, **details
        )
        return True

    def record_event_skipped(
        self, operator: Actor, projection: str, position: int, event_type: str, reason: str, now: datetime
    ) -> None:
        """Record, for auditors, that an operator had a read model skip the event at `position`."""
        check_text(reason, "reason", "A reason")
        self._trigger(
            self.EventSkipped,
            operator,
            now,
            projection=projection,
            position=position,
            event_type=event_type,
            reason=reason[:MAX_DESCRIPTION_LENGTH],
        )

    def erase_person(self, operator: Actor, pseudonym: str, address: str, user_ids: Iterable[str], now: datetime) -> None:
        """Record that the person at `address` (under `user_ids`) was erased, their key being `pseudonym`:
        they stop being a member and their pending invitations are cancelled."""
        member = self.check_erasable(address, user_ids)
        theirs = [invitation for invitation in self.invitations.values() if invitation.email == address]
        self._trigger(
            self.PersonErased,
            operator,
            now,
            pseudonym=pseudonym,
            member_id=None if member is None or self.deleted else member.id,
            scrubbed_member_id=member.id if member is not None and self.deleted else None,
            invitation_ids=[invitation.id for invitation in theirs],
            cancelled_invitation_ids=[invitation.id for invitation in theirs if invitation.status == "pending"],
        )

    def check_erasable(self, address: str, user_ids: Iterable[str]) -> Member | None:
        """The person's membership here (None if none); the Owner cannot be erased (transfer ownership
        first), unless the organization was deleted."""
        member_key = next(
            (key for key in (self.member_by_user.get(u) for u in user_ids) if key is not None),
            self.member_by_email.get(address),
        )
        member = None if member_key is None else self.members[member_key]
        if member is not None and self.is_owner(member) and not self.deleted:
            raise err.OwnerCannotBeErasedError(
                f"This person is the Owner of {self.name!r}: ownership must be transferred before they can be erased."
            )
        return member

    # -- invite links --------------------------------------------------------
    def create_invite_link(
        self,
        actor: Actor,
        link_id: UUID,
        role_id: UUID,
        code_nonce: str,
        now: datetime,
        max_uses: int = 0,
        expires_in_days: int = DEFAULT_EXPIRES_IN_DAYS,
    ) -> None:
        creator = self.check_permission(actor, MANAGE_MEMBERS)
        check_max_uses(max_uses)
        check_days(expires_in_days, INVITE_LINK_DAYS)
        self.check_can_assign(creator, role_id)
        self._trigger(
            self.InviteLinkCreated,
            actor,
            now,
            link_id=link_id,
            role_id=role_id,
            max_uses=max_uses,
            expires_at=now + timedelta(days=expires_in_days),
            code_nonce=code_nonce,
        )

    def delete_invite_link(self, actor: Actor, link_id: UUID, now: datetime) -> None:
        manager = self.check_permission(actor, MANAGE_MEMBERS)
        link = self.get_invite_link(link_id)
        if link.deleted:
            raise err.InviteLinkNotFoundError("That invite link was already deleted.")
        self.check_can_assign(manager, link.role_id)
        self._trigger(self.InviteLinkDeleted, actor, now, link_id=link_id)

    def redeem_invite_link(self, user: Actor, link_id: UUID, member_id: UUID, now: datetime) -> None:
        """`user` has already proven they hold the link's code."""
        self.check_not_deleted()
        link = self.get_invite_link(link_id)
        if link.deleted:
            raise err.InviteLinkDeletedError("This invite link was deleted by an administrator.")
        if self.is_expired(link, now):
            raise err.InviteLinkExpiredError("This invite link has expired.")
        email = validate_email(user.email)
        self.check_not_member(email, user.user_id)
        if user.user_id in self.redemptions.get(key_of(link_id), {}):
            raise err.InviteLinkAlreadyUsedError("You have already used this invite link.")
        if link.max_uses and link.use_count >= link.max_uses:
            raise err.InviteLinkUsedUpError("This invite link has reached its maximum number of uses.")
        pending = self._pending_invitation_for(email)
        self._trigger(
            self.MemberJoinedByLink,
            user,
            now,
            link_id=link_id,
            member_id=member_id,
            user_id=user.user_id,
            email=email,
            name=person_name(user),
            role_id=link.role_id,
            cancelled_invitation_id=None if pending is None else pending.id,
        )

    # -- members -------------------------------------------------------------
    def change_role(self, actor: Actor, member_id: UUID, role_id: UUID, now: datetime) -> bool:
        """Returns False, recording nothing, when the member already has that role."""
        manager = self.check_permission(actor, MANAGE_MEMBERS)
        member = self.get_member(member_id)
        if self.is_owner(member):
            raise err.OwnerRoleCannotChangeError("The Owner's role cannot be changed; transfer ownership instead.")
        self.check_can_manage(manager, member)
        self.check_can_assign(manager, role_id)
        if member.role_id == role_id:
            return False
        self._trigger(
            self.RoleChanged,
            actor,
            now,
            member_id=member_id,
            email=member.email,
            old_role_id=member.role_id,
            role_id=role_id,
        )
        return True

    def remove_member(self, actor: Actor, member_id: UUID, now: datetime) -> None:
        manager = self.check_permission(actor, MANAGE_MEMBERS)
        member = self.get_member(member_id)
        if self.is_owner(member):
            raise err.OwnerCannotBeRemovedError("The Owner cannot be removed; ownership must be transferred first.")
        if member.user_id == actor.user_id:
            raise err.CannotRemoveYourselfError("You cannot remove yourself; leave the organization instead.")
        self.check_can_manage(manager, member)
        self._trigger(self.MemberRemoved, actor, now, member_id=member_id, user_id=member.user_id, email=member.email)

    def leave(self, actor: Actor, now: datetime) -> UUID:
        member = self.check_member(actor)
        if self.is_owner(member):
            raise err.OwnerCannotLeaveError("The Owner must transfer ownership before leaving.")
        self._trigger(self.MemberLeft, actor, now, member_id=member.id, user_id=member.user_id, email=member.email)
        return member.id

    def transfer_ownership(self, actor: Actor, member_id: UUID, now: datetime) -> None:
        current = self.check_member(actor)
        if not self.is_owner(current):
            raise err.OwnerOnlyError("Only the Owner can transfer ownership.")
        target = self.get_member(member_id)
        if self.is_owner(target):
            raise err.AlreadyOwnerError("That member is already the Owner.")
        self._trigger(
            self.OwnershipTransferred,
            actor,
            now,
            from_member_id=current.id,
            to_member_id=member_id,
            to_email=target.email,
            previous_role_id=target.role_id,
            demoted_to_role_id=system_role_id(self.id, ADMIN.key),
        )

    # -- roles ---------------------------------------------------------------
    def create_role(
        self, actor: Actor, role_id: UUID, name: str, description: str, permissions: list[str], now: datetime
    ) -> None:
        manager = self.check_permission(actor, MANAGE_ROLES)
        name, description = check_role_text(name, description)
        self.check_role_name_free(name)
        closed = self.check_grantable(manager, permissions)
        self._trigger(
            self.RoleCreated,
            actor,
            now,
            role_id=role_id,
            name=name,
            description=description,
            permissions=sorted(closed),
        )

    def update_role(
        self,
        actor: Actor,
        role_id: UUID,
        now: datetime,
        name: str | None = None,
        description: str | None = None,
        permissions: list[str] | None = None,
    ) -> bool:
        """Changes what is given; returns False, recording nothing, when nothing changes."""
        manager = self.check_permission(actor, MANAGE_ROLES)
        role = self.check_custom_role(manager, role_id)
        name, description = check_role_text(
            role.name if name is None else name, role.description if description is None else description
        )
        self.check_role_name_free(name, renaming=role_id)
        closed = self.check_grantable(manager, role.permissions if permissions is None else permissions)
        if (name, description, closed) == (role.name, role.description, role.permissions):
            return False
        self._trigger(
            self.RoleUpdated,
            actor,
            now,
            role_id=role_id,
            name=name,
            description=description,
            permissions=sorted(closed),
        )
        return True

    def delete_role(self, actor: Actor, role_id: UUID, now: datetime) -> None:
        manager = self.check_permission(actor, MANAGE_ROLES)
        role = self.check_custom_role(manager, role_id)
        self.check_role_unused(role_id)
        self._trigger(self.RoleDeleted, actor, now, role_id=role_id, name=role.name)

    # -- queries -------------------------------------------------------------
    @property
    def owner_role_id(self) -> UUID:
        return system_role_id(self.id, OWNER.key)

    @property
    def owner(self) -> Member:
        return self.members[self.owner_member_id]

    def member_for_user(self, user_id: str) -> Member | None:
        key = self.member_by_user.get(user_id)
        return None if key is None else self.members[key]

    def role_of(self, member: Member) -> Role:
        return self.roles[key_of(member.role_id)]

    def permissions_of(self, member: Member) -> frozenset[str]:
        return self.role_of(member).permissions

    def is_owner(self, member: Member) -> bool:
        return key_of(member.id) == self.owner_member_id

    @staticmethod
    def is_expired(item: Invitation | InviteLink, now: datetime) -> bool:
        return now >= item.expires_at

    def invitation_status(self, invitation: Invitation, now: datetime) -> InvitationStatus:
        """pending, accepted, expired or cancelled: expiry needs no event."""
        if invitation.status == "pending" and self.is_expired(invitation, now):
            return "expired"
        return invitation.status

    def get_member(self, member_id: UUID) -> Member:
        member = self.members.get(key_of(member_id))
        if member is None:
            raise err.MemberNotFoundError(f"No member {member_id} in this organization.")
        return member

    def get_invitation(self, invitation_id: UUID) -> Invitation:
        invitation = self.invitations.get(key_of(invitation_id))
        if invitation is None:
            raise err.InvitationNotFoundError(f"No invitation {invitation_id} in this organization.")
        return invitation

    def get_invite_link(self, link_id: UUID) -> InviteLink:
        link = self.links.get(key_of(link_id))
        if link is None:
            raise err.InviteLinkNotFoundError(f"No invite link {link_id} in this organization.")
        return link

    def get_role(self, role_id: UUID) -> Role:
        role = self.roles.get(key_of(role_id))
        if role is None:
            raise err.RoleNotFoundError(f"No role {role_id} in this organization.")
        return role

    # -- guards (the rule itself: membership.authorization) -------------------
    def check_member(self, actor: Actor) -> Member:
        """Nobody is a member of a deleted organization."""
        return authorization.check_member(None if self.deleted else self.member_for_user(actor.user_id))

    def check_not_deleted(self) -> None:
        if self.deleted:
            raise err.OrganizationDeletedError(f"The organization {self.name!r} was deleted by its Owner.")

    def check_permission(self, actor: Actor, permission: str) -> Member:
        member = self.check_member(actor)
        authorization.check_permission(self.permissions_of(member), permission)
        return member

    def check_can_assign(self, manager: Member, role_id: UUID) -> None:
        """Only a role whose permissions the manager holds all of; never Owner."""
        role = self.get_role(role_id)
        authorization.check_can_assign(
            self.permissions_of(manager), self.is_owner(manager), role.permissions, role.name, role.key
        )

    def check_can_manage(self, manager: Member, member: Member) -> None:
        """Only members whose permissions the manager holds all of."""
        authorization.check_can_manage(
            self.permissions_of(manager), self.is_owner(manager), self.permissions_of(member)
        )

    def check_grantable(self, manager: Member, permissions: Iterable[str]) -> frozenset[str]:
        unknown = unknown_permissions(permissions)
        if unknown:
            raise err.InvalidValueError(f"Unknown permissions: {', '.join(unknown)}.", field="permissionIds")
        closed = closure(permissions)
        authorization.check_can_grant(self.permissions_of(manager), self.is_owner(manager), closed)
        return closed

    def check_custom_role(self, manager: Member, role_id: UUID) -> Role:
        role = self.get_role(role_id)
        if role.system:
            raise err.SystemRoleImmutableError(f"The system role {role.name!r} cannot be changed or deleted.")
        authorization.check_can_change_role(self.permissions_of(manager), self.is_owner(manager), role.permissions)
        return role

    def check_role_name_free(self, name: str, renaming: UUID | None = None) -> None:
        for role in self.roles.values():
            if role.id != renaming and role.name.casefold() == name.casefold():
                raise err.RoleNameTakenError(f"A role named {role.name!r} already exists.")

    def check_role_unused(self, role_id: UUID) -> None:
        if self.role_member_counts.get(key_of(role_id)):
            raise err.RoleInUseError("Members hold this role; give them another role first.")
        if any(self.invitations[key].role_id == role_id for key in self.pending_by_email.values()):
            raise err.RoleInUseError("Pending invitations grant this role; cancel them first.")
        if any(link.role_id == role_id and not link.deleted for link in self.links.values()):
            raise err.RoleInUseError("Invite links grant this role; delete them first.")

    def check_not_member(self, email: str, user_id: str | None = None) -> None:
        if email in self.member_by_email or (user_id is not None and user_id in self.member_by_user):
            raise err.AlreadyMemberError("Already a member of this organization.")

    def check_invitation_is_pending(self, invitation: Invitation) -> None:
        if invitation.status != "pending":
            raise err.InvitationNotPendingError(f"This invitation is {invitation.status}, not pending.")

    def check_invitation_usable(self, invitation: Invitation, now: datetime) -> None:
        status = self.invitation_status(invitation, now)
        if status == "accepted":
            raise err.InvitationAlreadyAcceptedError("This invitation has already been accepted.")
        if status == "cancelled":
            raise err.InvitationCancelledError("This invitation was cancelled.")
        if status == "expired":
            raise err.InvitationExpiredError("This invitation has expired; ask for a new one.")

    # -- recording events (their apply() changes the state: membership.events) --
    def _trigger(self, event_class: type[events.Event], actor: Actor, now: datetime, **fields: Any) -> None:
        self.trigger_event(event_class, timestamp=now, **fields, **stamp(actor))

    def _pending_invitation_for(self, email: str) -> Invitation | None:
        key = self.pending_by_email.get(email)
        return None if key is None else self.invitations[key]
