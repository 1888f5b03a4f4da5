"""The Organization aggregate: members, invitations, invite links and roles.

Public methods check the rules and raise `membership.exceptions` errors; only
then do they trigger an event, whose `apply` method assigns state. `apply`
re-runs on every replay, so everything non-deterministic (ids, nonces, the
current time) is computed by the caller and carried in the event.

State is plain JSON-safe data (str keys, lists, datetimes) so snapshots work,
plus small indexes that keep every command O(1) in the number of members.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from membership import addresses, authorization
from membership import exceptions as err
from membership.permissions import (
    ADMIN,
    MANAGE_MEMBERS,
    MANAGE_ROLES,
    OWNER,
    SYSTEM_ROLES,
    closure,
    unknown_permissions,
)
from membership.text import check_text

INVITATION_DAYS = range(1, 31)
INVITE_LINK_DAYS = range(1, 366)
MAX_LINK_USES = 1_000_000
DEFAULT_EXPIRES_IN_DAYS = 7
MAX_ROLE_NAME_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 500
MAX_ORGANIZATION_NAME_LENGTH = 200
MAX_PERSON_NAME_LENGTH = 200
MAX_USER_ID_LENGTH = 255


@dataclass(frozen=True)
class Actor:
    """The authenticated user a command is performed by (from the token)."""

    user_id: str
    email: str = ""
    name: str = ""


def normalize_email(email: str) -> str:
    """Invitation e-mails are stored trimmed, lower-cased and composed (NFC), so they compare equal."""
    return addresses.normalize(email)


def validate_email(email: str) -> str:
    """`email` trimmed, lower-cased and in NFC form if it can be delivered (see membership.addresses)."""
    return addresses.validate_email(email)


def check_days(days: int, allowed: range, field: str = "expiresInDays") -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days not in allowed:
        raise err.InvalidValueError(
            f"{field} must be a whole number from {allowed.start} to {allowed.stop - 1}.", field=field
        )


def system_role_id(organization_id: UUID, key: str) -> UUID:
    """System roles get ids derived from the organization, stable across replays."""
    return uuid5(NAMESPACE_URL, f"/organizations/{organization_id}/roles/{key}")


class Organization(Aggregate):
    """One tenant: its members, pending invitations, invite links and roles."""

    TOPIC = "membership:Organization"

    class Event(Aggregate.Event):
        """Every event records who caused it."""

        actor_id: str
        actor_email: str

    class Created(Event, Aggregate.Created):
        TOPIC = "membership:Organization.Created"
        name: str
        roles: list[dict[str, Any]]

    class MemberJoined(Event):
        """The creator joined as the Owner."""

        TOPIC = "membership:Organization.MemberJoined"
        member_id: UUID
        user_id: str
        email: str
        name: str
        role_id: UUID

        def apply(self, org: Organization) -> None:
            org._add_member(self.member_id, self.user_id, self.email, self.name, self.role_id, self.timestamp)
            if str(self.role_id) == org.owner_role_id:
                org.owner_member_id = str(self.member_id)

    class MemberInvited(Event):
        TOPIC = "membership:Organization.MemberInvited"
        invitation_id: UUID
        email: str
        role_id: UUID
        expires_at: datetime
        expires_in_days: int
        token_nonce: str
        replaces_invitation_id: UUID | None = None

        def apply(self, org: Organization) -> None:
            if self.replaces_invitation_id is not None:
                org._close_invitation(str(self.replaces_invitation_id), "expired")
            org.invitations[str(self.invitation_id)] = {
                "email": self.email,
                "role_id": str(self.role_id),
                "status": "pending",
                "expires_at": self.expires_at,
                "expires_in_days": self.expires_in_days,
                "invited_by": self.actor_id,
                "token_nonce": self.token_nonce,
            }
            org.pending_by_email[self.email] = str(self.invitation_id)

    class InvitationResent(Event):
        TOPIC = "membership:Organization.InvitationResent"
        invitation_id: UUID
        expires_at: datetime
        token_nonce: str

        def apply(self, org: Organization) -> None:
            invitation = org.invitations[str(self.invitation_id)]
            invitation["expires_at"] = self.expires_at
            invitation["token_nonce"] = self.token_nonce
            invitation.pop("email_status", None)  # the new token gets an e-mail of its own

    class InvitationCancelled(Event):
        TOPIC = "membership:Organization.InvitationCancelled"
        invitation_id: UUID
        email: str

        def apply(self, org: Organization) -> None:
            org._close_invitation(str(self.invitation_id), "cancelled")

    class InviteAccepted(Event):
        TOPIC = "membership:Organization.InviteAccepted"
        invitation_id: UUID
        member_id: UUID
        user_id: str
        email: str
        name: str
        role_id: UUID

        def apply(self, org: Organization) -> None:
            org._close_invitation(str(self.invitation_id), "accepted")
            org._add_member(self.member_id, self.user_id, self.email, self.name, self.role_id, self.timestamp)

    class InviteLinkCreated(Event):
        TOPIC = "membership:Organization.InviteLinkCreated"
        link_id: UUID
        role_id: UUID
        max_uses: int
        expires_at: datetime
        code_nonce: str

        def apply(self, org: Organization) -> None:
            org.links[str(self.link_id)] = {
                "role_id": str(self.role_id),
                "max_uses": self.max_uses,
                "use_count": 0,
                "expires_at": self.expires_at,
                "deleted": False,
                "code_nonce": self.code_nonce,
                "created_by": self.actor_id,
                "redeemed_by": {},
            }

    class InviteLinkDeleted(Event):
        TOPIC = "membership:Organization.InviteLinkDeleted"
        link_id: UUID

        def apply(self, org: Organization) -> None:
            org.links[str(self.link_id)]["deleted"] = True

    class MemberJoinedByLink(Event):
        """Joining by link also cancels a pending invitation to the same e-mail."""

        TOPIC = "membership:Organization.MemberJoinedByLink"
        link_id: UUID
        member_id: UUID
        user_id: str
        email: str
        name: str
        role_id: UUID
        cancelled_invitation_id: UUID | None = None

        def apply(self, org: Organization) -> None:
            link = org.links[str(self.link_id)]
            link["use_count"] += 1
            link["redeemed_by"][self.user_id] = str(self.member_id)
            if self.cancelled_invitation_id is not None:
                org._close_invitation(str(self.cancelled_invitation_id), "cancelled")
            org._add_member(self.member_id, self.user_id, self.email, self.name, self.role_id, self.timestamp)

    class RoleChanged(Event):
        TOPIC = "membership:Organization.RoleChanged"
        member_id: UUID
        email: str
        old_role_id: UUID
        role_id: UUID

        def apply(self, org: Organization) -> None:
            org._set_role(str(self.member_id), str(self.role_id))

    class MemberRemoved(Event):
        TOPIC = "membership:Organization.MemberRemoved"
        member_id: UUID
        user_id: str
        email: str

        def apply(self, org: Organization) -> None:
            org._drop_member(str(self.member_id))

    class MemberLeft(Event):
        TOPIC = "membership:Organization.MemberLeft"
        member_id: UUID
        user_id: str
        email: str

        def apply(self, org: Organization) -> None:
            org._drop_member(str(self.member_id))

    class OwnershipTransferred(Event):
        """The new Owner gets the Owner role; the old Owner becomes an Admin."""

        TOPIC = "membership:Organization.OwnershipTransferred"
        from_member_id: UUID
        to_member_id: UUID
        to_email: str
        previous_role_id: UUID
        demoted_to_role_id: UUID

        def apply(self, org: Organization) -> None:
            org._set_role(str(self.from_member_id), str(self.demoted_to_role_id))
            org._set_role(str(self.to_member_id), org.owner_role_id)
            org.owner_member_id = str(self.to_member_id)

    class RoleCreated(Event):
        TOPIC = "membership:Organization.RoleCreated"
        role_id: UUID
        name: str
        description: str
        permissions: list[str]

        def apply(self, org: Organization) -> None:
            org.roles[str(self.role_id)] = {
                "id": str(self.role_id),
                "key": None,
                "name": self.name,
                "description": self.description,
                "permissions": list(self.permissions),
                "system": False,
            }

    class RoleUpdated(Event):
        TOPIC = "membership:Organization.RoleUpdated"
        role_id: UUID
        name: str
        description: str
        permissions: list[str]

        def apply(self, org: Organization) -> None:
            role = org.roles[str(self.role_id)]
            role.update(name=self.name, description=self.description, permissions=list(self.permissions))

    class RoleDeleted(Event):
        TOPIC = "membership:Organization.RoleDeleted"
        role_id: UUID
        name: str

        def apply(self, org: Organization) -> None:
            del org.roles[str(self.role_id)]
            org.role_member_counts.pop(str(self.role_id), None)

    class InvitationEmailSent(Event):
        """The mailer handed the e-mail for the invitation's current token to the mail server."""

        TOPIC = "membership:Organization.InvitationEmailSent"
        invitation_id: UUID
        email: str
        message_id: str

        def apply(self, org: Organization) -> None:
            org.invitations[str(self.invitation_id)]["email_status"] = "sent"

    class InvitationEmailFailed(Event):
        """The mail server refused the invitation's e-mail for good."""

        TOPIC = "membership:Organization.InvitationEmailFailed"
        invitation_id: UUID
        email: str
        message_id: str
        reason: str

        def apply(self, org: Organization) -> None:
            org.invitations[str(self.invitation_id)]["email_status"] = "failed"

    class EventSkipped(Event):
        """An operator gave up applying one stored event to one read model (kept for auditors).

        Changes no state: the organization's events are all still there; one read model
        went on without the one at `position`.
        """

        TOPIC = "membership:Organization.EventSkipped"
        projection: str
        position: int
        event_type: str
        reason: str

    def __init__(self, name: str, roles: list[dict[str, Any]]) -> None:
        """Runs when the Created event is applied (on creation and on every replay)."""
        self.name = name
        self.roles: dict[str, dict[str, Any]] = {role["id"]: dict(role) for role in roles}
        self.members: dict[str, dict[str, Any]] = {}
        self.member_by_user: dict[str, str] = {}
        self.member_by_email: dict[str, str] = {}
        self.role_member_counts: dict[str, int] = {}
        self.owner_member_id = ""
        self.invitations: dict[str, dict[str, Any]] = {}
        self.pending_by_email: dict[str, str] = {}
        self.links: dict[str, dict[str, Any]] = {}

    # -- creation ------------------------------------------------------------
    @classmethod
    def create(
        cls, organization_id: UUID, name: str, owner: Actor, owner_member_id: UUID, now: datetime
    ) -> Organization:
        """A new organization whose creator is its only member, the Owner."""
        name = check_organization_name(name)
        roles = [
            {
                "id": str(system_role_id(organization_id, role.key)),
                "key": role.key,
                "name": role.name,
                "description": role.description,
                "permissions": sorted(role.permissions),
                "system": True,
            }
            for role in SYSTEM_ROLES
        ]
        org = cls._create(cls.Created, id=organization_id, timestamp=now, name=name, roles=roles, **_stamp(owner))
        org.trigger_event(
            cls.MemberJoined,
            timestamp=now,
            member_id=owner_member_id,
            user_id=owner.user_id,
            email=validate_email(owner.email),
            name=person_name(owner),
            role_id=system_role_id(organization_id, OWNER.key),
            **_stamp(owner),
        )
        return org

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
        if replaced is not None and not self.is_expired(self.invitations[replaced], now):
            raise err.AlreadyInvitedError(f"{email} already has a pending invitation.")
        if len(self.pending_by_email) - (replaced is not None) >= max_pending:
            raise err.TooManyPendingInvitationsError(
                f"This organization has {max_pending} pending invitations, the most allowed. "
                "Cancel expired or unneeded invitations, or use an invite link."
            )
        self.trigger_event(
            self.MemberInvited,
            timestamp=now,
            invitation_id=invitation_id,
            email=email,
            role_id=role_id,
            expires_at=now + timedelta(days=expires_in_days),
            expires_in_days=expires_in_days,
            token_nonce=token_nonce,
            replaces_invitation_id=UUID(replaced) if replaced else None,
            **_stamp(actor),
        )

    def resend_invitation(
        self, actor: Actor, invitation_id: UUID, token_nonce: str, now: datetime, expires_in_days: int | None = None
    ) -> None:
        """A new token and a new expiry; the old token stops working."""
        inviter = self.check_permission(actor, MANAGE_MEMBERS)
        invitation = self.get_invitation(invitation_id)
        self.check_invitation_is_pending(invitation)
        self.check_can_assign(inviter, UUID(invitation["role_id"]))
        days = invitation["expires_in_days"] if expires_in_days is None else expires_in_days
        check_days(days, INVITATION_DAYS)
        self.trigger_event(
            self.InvitationResent,
            timestamp=now,
            invitation_id=invitation_id,
            expires_at=now + timedelta(days=days),
            token_nonce=token_nonce,
            **_stamp(actor),
        )

    def cancel_invitation(self, actor: Actor, invitation_id: UUID, now: datetime) -> None:
        inviter = self.check_permission(actor, MANAGE_MEMBERS)
        invitation = self.get_invitation(invitation_id)
        self.check_invitation_is_pending(invitation)
        self.check_can_assign(inviter, UUID(invitation["role_id"]))
        self.trigger_event(
            self.InvitationCancelled,
            timestamp=now,
            invitation_id=invitation_id,
            email=invitation["email"],
            **_stamp(actor),
        )

    def accept_invitation(self, user: Actor, invitation_id: UUID, member_id: UUID, now: datetime) -> None:
        """`user` has already proven they hold the invitation's current token."""
        invitation = self.get_invitation(invitation_id)
        self.check_invitation_usable(invitation, now)
        email = normalize_email(user.email)
        if email != invitation["email"]:
            raise err.InvitationEmailMismatchError(
                "This invitation was sent to a different e-mail address than the one you are signed in with."
            )
        self.check_not_member(email, user.user_id)
        self.trigger_event(
            self.InviteAccepted,
            timestamp=now,
            invitation_id=invitation_id,
            member_id=member_id,
            user_id=user.user_id,
            email=email,
            name=person_name(user),
            role_id=UUID(invitation["role_id"]),
            **_stamp(user),
        )

    def record_invitation_email(
        self, mailer: Actor, invitation_id: UUID, token_nonce: str, message_id: str, now: datetime, failure: str = ""
    ) -> bool:
        """Record what became of the e-mail for one token; False (nothing recorded) if already
        recorded, or if the token was replaced since (its successor has an e-mail of its own)."""
        invitation = self.get_invitation(invitation_id)
        if invitation["token_nonce"] != token_nonce or invitation.get("email_status") in ("sent", "failed"):
            return False
        event, details = (
            (self.InvitationEmailFailed, {"reason": failure[:500]}) if failure else (self.InvitationEmailSent, {})
        )
        self.trigger_event(
            event,
            timestamp=now,
            invitation_id=invitation_id,
            email=invitation["email"],
            message_id=message_id,
            **details,
            **_stamp(mailer),
        )
        return True

    def record_event_skipped(
        self, operator: Actor, projection: str, position: int, event_type: str, reason: str, now: datetime
    ) -> None:
        """Record, for auditors, that an operator had a read model skip the event at `position`."""
        check_text(reason, "reason", "A reason")
        self.trigger_event(
            self.EventSkipped,
            timestamp=now,
            projection=projection,
            position=position,
            event_type=event_type,
            reason=reason[:MAX_DESCRIPTION_LENGTH],
            **_stamp(operator),
        )

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
        if isinstance(max_uses, bool) or not isinstance(max_uses, int) or not 0 <= max_uses <= MAX_LINK_USES:
            raise err.InvalidValueError(
                f"maxUses must be a whole number from 0 (unlimited) to {MAX_LINK_USES}.", "maxUses"
            )
        check_days(expires_in_days, INVITE_LINK_DAYS)
        self.check_can_assign(creator, role_id)
        self.trigger_event(
            self.InviteLinkCreated,
            timestamp=now,
            link_id=link_id,
            role_id=role_id,
            max_uses=max_uses,
            expires_at=now + timedelta(days=expires_in_days),
            code_nonce=code_nonce,
            **_stamp(actor),
        )

    def delete_invite_link(self, actor: Actor, link_id: UUID, now: datetime) -> None:
        manager = self.check_permission(actor, MANAGE_MEMBERS)
        link = self.get_invite_link(link_id)
        if link["deleted"]:
            raise err.InviteLinkNotFoundError("That invite link was already deleted.")
        self.check_can_assign(manager, UUID(link["role_id"]))
        self.trigger_event(self.InviteLinkDeleted, timestamp=now, link_id=link_id, **_stamp(actor))

    def redeem_invite_link(self, user: Actor, link_id: UUID, member_id: UUID, now: datetime) -> None:
        """`user` has already proven they hold the link's code."""
        link = self.get_invite_link(link_id)
        if link["deleted"]:
            raise err.InviteLinkDeletedError("This invite link was deleted by an administrator.")
        if now >= link["expires_at"]:
            raise err.InviteLinkExpiredError("This invite link has expired.")
        email = validate_email(user.email)
        self.check_not_member(email, user.user_id)
        if user.user_id in link["redeemed_by"]:
            raise err.InviteLinkAlreadyUsedError("You have already used this invite link.")
        if link["max_uses"] and link["use_count"] >= link["max_uses"]:
            raise err.InviteLinkUsedUpError("This invite link has reached its maximum number of uses.")
        pending = self._pending_invitation_for(email)
        self.trigger_event(
            self.MemberJoinedByLink,
            timestamp=now,
            link_id=link_id,
            member_id=member_id,
            user_id=user.user_id,
            email=email,
            name=person_name(user),
            role_id=UUID(link["role_id"]),
            cancelled_invitation_id=UUID(pending) if pending else None,
            **_stamp(user),
        )

    # -- members -------------------------------------------------------------
    def change_role(self, actor: Actor, member_id: UUID, role_id: UUID, now: datetime) -> bool:
        """Returns False, recording nothing, when the member already has that role."""
        manager = self.check_permission(actor, MANAGE_MEMBERS)
        member = self.get_member(member_id)
        if str(member_id) == self.owner_member_id:
            raise err.OwnerRoleCannotChangeError("The Owner's role cannot be changed; transfer ownership instead.")
        self.check_can_manage(manager, member)
        self.check_can_assign(manager, role_id)
        if member["role_id"] == str(role_id):
            return False
        self.trigger_event(
            self.RoleChanged,
            timestamp=now,
            member_id=member_id,
            email=member["email"],
            old_role_id=UUID(member["role_id"]),
            role_id=role_id,
            **_stamp(actor),
        )
        return True

    def remove_member(self, actor: Actor, member_id: UUID, now: datetime) -> None:
        manager = self.check_permission(actor, MANAGE_MEMBERS)
        member = self.get_member(member_id)
        if str(member_id) == self.owner_member_id:
            raise err.OwnerCannotBeRemovedError("The Owner cannot be removed; ownership must be transferred first.")
        if member["user_id"] == actor.user_id:
            raise err.CannotRemoveYourselfError("You cannot remove yourself; leave the organization instead.")
        self.check_can_manage(manager, member)
        self.trigger_event(
            self.MemberRemoved,
            timestamp=now,
            member_id=member_id,
            user_id=member["user_id"],
            email=member["email"],
            **_stamp(actor),
        )

    def leave(self, actor: Actor, now: datetime) -> UUID:
        member_id = self.check_member(actor)["id"]
        if member_id == self.owner_member_id:
            raise err.OwnerCannotLeaveError("The Owner must transfer ownership before leaving.")
        member = self.members[member_id]
        self.trigger_event(
            self.MemberLeft,
            timestamp=now,
            member_id=UUID(member_id),
            user_id=member["user_id"],
            email=member["email"],
            **_stamp(actor),
        )
        return UUID(member_id)

    def transfer_ownership(self, actor: Actor, member_id: UUID, now: datetime) -> None:
        current = self.check_member(actor)
        if current["id"] != self.owner_member_id:
            raise err.OwnerOnlyError("Only the Owner can transfer ownership.")
        target = self.get_member(member_id)
        if str(member_id) == self.owner_member_id:
            raise err.AlreadyOwnerError("That member is already the Owner.")
        self.trigger_event(
            self.OwnershipTransferred,
            timestamp=now,
            from_member_id=UUID(self.owner_member_id),
            to_member_id=member_id,
            to_email=target["email"],
            previous_role_id=UUID(target["role_id"]),
            demoted_to_role_id=system_role_id(self.id, ADMIN.key),
            **_stamp(actor),
        )

    # -- roles ---------------------------------------------------------------
    def create_role(
        self, actor: Actor, role_id: UUID, name: str, description: str, permissions: list[str], now: datetime
    ) -> None:
        manager = self.check_permission(actor, MANAGE_ROLES)
        name, description = self.check_role_text(name, description)
        closed = self.check_grantable(manager, permissions)
        self.trigger_event(
            self.RoleCreated,
            timestamp=now,
            role_id=role_id,
            name=name,
            description=description,
            permissions=sorted(closed),
            **_stamp(actor),
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
        name, description = self.check_role_text(
            role["name"] if name is None else name,
            role["description"] if description is None else description,
            renaming=str(role_id),
        )
        closed = self.check_grantable(manager, role["permissions"] if permissions is None else permissions)
        if (name, description, sorted(closed)) == (role["name"], role["description"], role["permissions"]):
            return False
        self.trigger_event(
            self.RoleUpdated,
            timestamp=now,
            role_id=role_id,
            name=name,
            description=description,
            permissions=sorted(closed),
            **_stamp(actor),
        )
        return True

    def delete_role(self, actor: Actor, role_id: UUID, now: datetime) -> None:
        manager = self.check_permission(actor, MANAGE_ROLES)
        role = self.check_custom_role(manager, role_id)
        self.check_role_unused(str(role_id))
        self.trigger_event(self.RoleDeleted, timestamp=now, role_id=role_id, name=role["name"], **_stamp(actor))

    # -- queries -------------------------------------------------------------
    @property
    def owner_role_id(self) -> str:
        return str(system_role_id(self.id, OWNER.key))

    def member_for_user(self, user_id: str) -> dict[str, Any] | None:
        """The member record (with its `id`) of a user, or None."""
        member_id = self.member_by_user.get(user_id)
        return None if member_id is None else {"id": member_id, **self.members[member_id]}

    def permissions_of(self, member: dict[str, Any]) -> frozenset[str]:
        return frozenset(self.roles[member["role_id"]]["permissions"])

    def is_owner(self, member: dict[str, Any]) -> bool:
        return member["id"] == self.owner_member_id

    @staticmethod
    def is_expired(item: dict[str, Any], now: datetime) -> bool:
        return now >= item["expires_at"]

    def invitation_status(self, invitation: dict[str, Any], now: datetime) -> str:
        """pending, accepted, expired or cancelled: expiry needs no event."""
        if invitation["status"] == "pending" and self.is_expired(invitation, now):
            return "expired"
        return str(invitation["status"])

    def get_member(self, member_id: UUID) -> dict[str, Any]:
        member = self.members.get(str(member_id))
        if member is None:
            raise err.MemberNotFoundError(f"No member {member_id} in this organization.")
        return {"id": str(member_id), **member}

    def get_invitation(self, invitation_id: UUID) -> dict[str, Any]:
        invitation = self.invitations.get(str(invitation_id))
        if invitation is None:
            raise err.InvitationNotFoundError(f"No invitation {invitation_id} in this organization.")
        return invitation

    def get_invite_link(self, link_id: UUID) -> dict[str, Any]:
        link = self.links.get(str(link_id))
        if link is None:
            raise err.InviteLinkNotFoundError(f"No invite link {link_id} in this organization.")
        return link

    def get_role(self, role_id: UUID) -> dict[str, Any]:
        role = self.roles.get(str(role_id))
        if role is None:
            raise err.RoleNotFoundError(f"No role {role_id} in this organization.")
        return role

    # -- guards (the rule itself: membership.authorization) -------------------
    def check_member(self, actor: Actor) -> dict[str, Any]:
        return authorization.check_member(self.member_for_user(actor.user_id))

    def check_permission(self, actor: Actor, permission: str) -> dict[str, Any]:
        member = self.check_member(actor)
        authorization.check_permission(self.permissions_of(member), permission)
        return member

    def check_can_assign(self, manager: dict[str, Any], role_id: UUID) -> None:
        """Only a role whose permissions the manager holds all of; never Owner."""
        role = self.get_role(role_id)
        authorization.check_can_assign(
            self.permissions_of(manager), self.is_owner(manager), role["permissions"], role["name"], role.get("key")
        )

    def check_can_manage(self, manager: dict[str, Any], member: dict[str, Any]) -> None:
        """Only members whose permissions the manager holds all of."""
        authorization.check_can_manage(
            self.permissions_of(manager), self.is_owner(manager), self.permissions_of(member)
        )

    def check_grantable(self, manager: dict[str, Any], permissions: list[str]) -> frozenset[str]:
        unknown = unknown_permissions(permissions)
        if unknown:
            raise err.InvalidValueError(f"Unknown permissions: {', '.join(unknown)}.", field="permissionIds")
        closed = closure(permissions)
        authorization.check_can_grant(self.permissions_of(manager), self.is_owner(manager), closed)
        return closed

    def check_custom_role(self, manager: dict[str, Any], role_id: UUID) -> dict[str, Any]:
        role = self.get_role(role_id)
        if role["system"]:
            raise err.SystemRoleImmutableError(f"The system role {role['name']!r} cannot be changed or deleted.")
        authorization.check_can_change_role(self.permissions_of(manager), self.is_owner(manager), role["permissions"])
        return role

    def check_role_text(self, name: str, description: str, renaming: str | None = None) -> tuple[str, str]:
        check_text(name, "name", "A role name")
        check_text(description, "description", "A description")
        name = " ".join(name.split())
        if not 1 <= len(name) <= MAX_ROLE_NAME_LENGTH:
            raise err.InvalidValueError(f"A role name must have 1 to {MAX_ROLE_NAME_LENGTH} characters.", "name")
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise err.InvalidValueError(
                f"A description has at most {MAX_DESCRIPTION_LENGTH} characters.", "description"
            )
        for role_id, role in self.roles.items():
            if role_id != renaming and role["name"].casefold() == name.casefold():
                raise err.RoleNameTakenError(f"A role named {role['name']!r} already exists.")
        return name, description.strip()

    def check_role_unused(self, role_id: str) -> None:
        if self.role_member_counts.get(role_id):
            raise err.RoleInUseError("Members hold this role; give them another role first.")
        if any(self.invitations[i]["role_id"] == role_id for i in self.pending_by_email.values()):
            raise err.RoleInUseError("Pending invitations grant this role; cancel them first.")
        if any(link["role_id"] == role_id and not link["deleted"] for link in self.links.values()):
            raise err.RoleInUseError("Invite links grant this role; delete them first.")

    def check_not_member(self, email: str, user_id: str | None = None) -> None:
        if email in self.member_by_email or (user_id is not None and user_id in self.member_by_user):
            raise err.AlreadyMemberError("Already a member of this organization.")

    def check_invitation_is_pending(self, invitation: dict[str, Any]) -> None:
        if invitation["status"] != "pending":
            raise err.InvitationNotPendingError(f"This invitation is {invitation['status']}, not pending.")

    def check_invitation_usable(self, invitation: dict[str, Any], now: datetime) -> None:
        status = self.invitation_status(invitation, now)
        if status == "accepted":
            raise err.InvitationAlreadyAcceptedError("This invitation has already been accepted.")
        if status == "cancelled":
            raise err.InvitationCancelledError("This invitation was cancelled.")
        if status == "expired":
            raise err.InvitationExpiredError("This invitation has expired; ask for a new one.")

    # -- state changes, called only from apply() -----------------------------
    def _pending_invitation_for(self, email: str) -> str | None:
        return self.pending_by_email.get(email)

    def _add_member(
        self, member_id: UUID, user_id: str, email: str, name: str, role_id: UUID, joined_at: datetime
    ) -> None:
        key = str(member_id)
        self.members[key] = {
            "user_id": user_id,
            "email": email,
            "name": name,
            "role_id": str(role_id),
            "joined_at": joined_at,
        }
        self.member_by_user[user_id] = key
        self.member_by_email[email] = key
        self._count_role(str(role_id), +1)

    def _drop_member(self, member_id: str) -> None:
        member = self.members.pop(member_id)
        del self.member_by_user[member["user_id"]]
        del self.member_by_email[member["email"]]
        self._count_role(member["role_id"], -1)

    def _set_role(self, member_id: str, role_id: str) -> None:
        member = self.members[member_id]
        self._count_role(member["role_id"], -1)
        member["role_id"] = role_id
        self._count_role(role_id, +1)

    def _count_role(self, role_id: str, delta: int) -> None:
        count = self.role_member_counts.get(role_id, 0) + delta
        if count:
            self.role_member_counts[role_id] = count
        else:
            self.role_member_counts.pop(role_id, None)

    def _close_invitation(self, invitation_id: str, status: str) -> None:
        invitation = self.invitations[invitation_id]
        invitation["status"] = status
        if self.pending_by_email.get(invitation["email"]) == invitation_id:
            del self.pending_by_email[invitation["email"]]


def check_organization_name(name: str) -> str:
    check_text(name, "name", "An organization name")
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_ORGANIZATION_NAME_LENGTH:
        raise err.InvalidValueError(
            f"An organization name must have 1 to {MAX_ORGANIZATION_NAME_LENGTH} characters.", "name"
        )
    return name


def person_name(actor: Actor) -> str:
    """Names come from identity tokens: whitespace folded, length capped."""
    check_text(actor.name, "name", "A person's name")
    return " ".join(actor.name.split())[:MAX_PERSON_NAME_LENGTH]


def check_actor(actor: Actor) -> None:
    """Who acts comes from a token: its id and e-mail are stored in every event, so they obey the text rule."""
    if not 1 <= len(actor.user_id) <= MAX_USER_ID_LENGTH:
        raise err.InvalidValueError(f"A user id must have 1 to {MAX_USER_ID_LENGTH} characters.", "sub")
    check_text(actor.user_id, "sub", "A user id")
    check_text(actor.email, "email", "An e-mail address")


def _stamp(actor: Actor) -> dict[str, str]:
    """The actor fields every event carries."""
    check_actor(actor)
    return {"actor_id": actor.user_id, "actor_email": normalize_email(actor.email)}
