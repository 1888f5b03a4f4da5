"""Every event of an Organization, and how each one changes its state.

Events are forever: a stored event names its class by its pinned `TOPIC`
(`membership:Organization.MemberInvited`), which the Organization registers, so
these classes may move but their topics and fields may not change (add fields
with defaults, or bump `class_version` with an upcaster). They are reachable as
`Organization.MemberInvited` and so on. `tests/fixtures/` holds stored events
of every type that must always replay.

`apply` re-runs on every replay: it only assigns state, from the event's own
fields (never the clock, ids or anything looked up elsewhere). Records are
frozen: a change replaces one (`membership.state.change`), and the functions at
the end keep the aggregate's indexes in step with its records.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from membership.personal_data import erased_address, erased_name
from membership.state import Invitation, InvitationStatus, InviteLink, Member, Role, change, key_of

if TYPE_CHECKING:
    from membership.organization import Organization


# Personal data (see membership.personal_data): each personal field -> (the field holding the address of the
# person it belongs to, the field holding their user id or None). Stored sealed with that person's key.
Personal = dict[str, tuple[str, str | None]]
ACTOR: Personal = {"actor_email": ("actor_email", "actor_id")}


def personal(address: str, user_id: str | None = None, *others: str) -> Personal:
    """The actor's address, the `address` field and `others` (names...) of the person at `address`."""
    return {**ACTOR, address: (address, user_id), **{field: (address, user_id) for field in others}}


class Event(Aggregate.Event):
    """Every event records who caused it."""

    PERSONAL_DATA: ClassVar[Personal] = ACTOR
    actor_id: str
    actor_email: str


class Created(Event, Aggregate.Created):
    TOPIC = "membership:Organization.Created"
    name: str
    roles: list[dict[str, Any]]


class MemberJoined(Event):
    """The creator joined as the Owner."""

    TOPIC = "membership:Organization.MemberJoined"
    PERSONAL_DATA = personal("email", "user_id", "name")
    member_id: UUID
    user_id: str
    email: str
    name: str
    role_id: UUID

    def apply(self, org: Organization) -> None:
        _add_member(org, Member(self.member_id, self.user_id, self.email, self.name, self.role_id, self.timestamp))
        if self.role_id == org.owner_role_id:
            org.owner_member_id = key_of(self.member_id)


class MemberInvited(Event):
    TOPIC = "membership:Organization.MemberInvited"
    PERSONAL_DATA = personal("email")
    invitation_id: UUID
    email: str
    role_id: UUID
    expires_at: datetime
    expires_in_days: int
    token_nonce: str
    replaces_invitation_id: UUID | None = None

    def apply(self, org: Organization) -> None:
        _forget_what_no_rule_needs(org, self.timestamp)  # first: the one this replaces stays a while, "expired"
        if self.replaces_invitation_id is not None:
            _close_invitation(org, self.replaces_invitation_id, "expired")
        org.invitations[key_of(self.invitation_id)] = Invitation(
            id=self.invitation_id,
            email=self.email,
            role_id=self.role_id,
            status="pending",
            expires_at=self.expires_at,
            expires_in_days=self.expires_in_days,
            invited_by=self.actor_id,
            token_nonce=self.token_nonce,
        )
        org.pending_by_email[self.email] = key_of(self.invitation_id)


class InvitationResent(Event):
    TOPIC = "membership:Organization.InvitationResent"
    invitation_id: UUID
    expires_at: datetime
    token_nonce: str

    def apply(self, org: Organization) -> None:
        # The new token gets an e-mail of its own; the old one is remembered only to tell its holder why it
        # no longer works.
        replaced = org.invitations[key_of(self.invitation_id)]
        change(
            org.invitations,
            self.invitation_id,
            expires_at=self.expires_at,
            token_nonce=self.token_nonce,
            email_status=None,
            earlier_nonces=(*replaced.earlier_nonces, replaced.token_nonce),
        )


class InvitationCancelled(Event):
    TOPIC = "membership:Organization.InvitationCancelled"
    PERSONAL_DATA = personal("email")
    invitation_id: UUID
    email: str

    def apply(self, org: Organization) -> None:
        _close_invitation(org, self.invitation_id, "cancelled")


class InviteAccepted(Event):
    TOPIC = "membership:Organization.InviteAccepted"
    PERSONAL_DATA = personal("email", "user_id", "name")
    invitation_id: UUID
    member_id: UUID
    user_id: str
    email: str
    name: str
    role_id: UUID

    def apply(self, org: Organization) -> None:
        _close_invitation(org, self.invitation_id, "accepted")
        _add_member(org, Member(self.member_id, self.user_id, self.email, self.name, self.role_id, self.timestamp))


class InviteLinkCreated(Event):
    TOPIC = "membership:Organization.InviteLinkCreated"
    link_id: UUID
    role_id: UUID
    max_uses: int
    expires_at: datetime
    code_nonce: str

    def apply(self, org: Organization) -> None:
        key = key_of(self.link_id)
        org.links[key] = InviteLink(
            id=self.link_id,
            role_id=self.role_id,
            max_uses=self.max_uses,
            use_count=0,
            expires_at=self.expires_at,
            code_nonce=self.code_nonce,
            created_by=self.actor_id,
        )
        org.redemptions[key] = {}


class InviteLinkDeleted(Event):
    TOPIC = "membership:Organization.InviteLinkDeleted"
    link_id: UUID

    def apply(self, org: Organization) -> None:
        change(org.links, self.link_id, deleted=True)


class MemberJoinedByLink(Event):
    """Joining by link also cancels a pending invitation to the same e-mail."""

    TOPIC = "membership:Organization.MemberJoinedByLink"
    PERSONAL_DATA = personal("email", "user_id", "name")
    link_id: UUID
    member_id: UUID
    user_id: str
    email: str
    name: str
    role_id: UUID
    cancelled_invitation_id: UUID | None = None

    def apply(self, org: Organization) -> None:
        key = key_of(self.link_id)
        change(org.links, self.link_id, use_count=org.links[key].use_count + 1)
        org.redemptions.setdefault(key, {})[self.user_id] = key_of(self.member_id)
        if self.cancelled_invitation_id is not None:
            _close_invitation(org, self.cancelled_invitation_id, "cancelled")
        _add_member(org, Member(self.member_id, self.user_id, self.email, self.name, self.role_id, self.timestamp))


class RoleChanged(Event):
    TOPIC = "membership:Organization.RoleChanged"
    PERSONAL_DATA = personal("email")
    member_id: UUID
    email: str
    old_role_id: UUID
    role_id: UUID

    def apply(self, org: Organization) -> None:
        _set_role(org, self.member_id, self.role_id)


class MemberRemoved(Event):
    TOPIC = "membership:Organization.MemberRemoved"
    PERSONAL_DATA = personal("email", "user_id")
    member_id: UUID
    user_id: str
    email: str

    def apply(self, org: Organization) -> None:
        _drop_member(org, self.member_id)


class MemberLeft(Event):
    TOPIC = "membership:Organization.MemberLeft"
    PERSONAL_DATA = personal("email", "user_id")
    member_id: UUID
    user_id: str
    email: str

    def apply(self, org: Organization) -> None:
        _drop_member(org, self.member_id)


class OwnershipTransferred(Event):
    """The new Owner gets the Owner role; the old Owner becomes an Admin."""

    TOPIC = "membership:Organization.OwnershipTransferred"
    PERSONAL_DATA = personal("to_email")
    from_member_id: UUID
    to_member_id: UUID
    to_email: str
    previous_role_id: UUID
    demoted_to_role_id: UUID

    def apply(self, org: Organization) -> None:
        _set_role(org, self.from_member_id, self.demoted_to_role_id)
        _set_role(org, self.to_member_id, org.owner_role_id)
        org.owner_member_id = key_of(self.to_member_id)


class RoleCreated(Event):
    TOPIC = "membership:Organization.RoleCreated"
    role_id: UUID
    name: str
    description: str
    permissions: list[str]

    def apply(self, org: Organization) -> None:
        org.roles[key_of(self.role_id)] = Role(self.role_id, self.name, self.description, frozenset(self.permissions))


class RoleUpdated(Event):
    TOPIC = "membership:Organization.RoleUpdated"
    role_id: UUID
    name: str
    description: str
    permissions: list[str]

    def apply(self, org: Organization) -> None:
        change(
            org.roles,
            self.role_id,
            name=self.name,
            description=self.description,
            permissions=frozenset(self.permissions),
        )


class RoleDeleted(Event):
    TOPIC = "membership:Organization.RoleDeleted"
    role_id: UUID
    name: str

    def apply(self, org: Organization) -> None:
        del org.roles[key_of(self.role_id)]
        org.role_member_counts.pop(key_of(self.role_id), None)


class InvitationEmailSent(Event):
    """The mailer handed the e-mail for the invitation's current token to the mail server."""

    TOPIC = "membership:Organization.InvitationEmailSent"
    PERSONAL_DATA = personal("email")
    invitation_id: UUID
    email: str
    message_id: str

    def apply(self, org: Organization) -> None:
        if key_of(self.invitation_id) in org.invitations:  # see _forget_closed_invitations
            change(org.invitations, self.invitation_id, email_status="sent")


class InvitationEmailFailed(Event):
    """The mail server refused the invitation's e-mail for good."""

    TOPIC = "membership:Organization.InvitationEmailFailed"
    PERSONAL_DATA = personal("email")
    invitation_id: UUID
    email: str
    message_id: str
    reason: str

    def apply(self, org: Organization) -> None:
        if key_of(self.invitation_id) in org.invitations:  # see _forget_closed_invitations
            change(org.invitations, self.invitation_id, email_status="failed")


class OrganizationRenamed(Event):
    TOPIC = "membership:Organization.OrganizationRenamed"
    name: str
    old_name: str

    def apply(self, org: Organization) -> None:
        org.name = self.name


class OrganizationDeleted(Event):
    """The Owner deleted the organization. Its events stay (auditors replay them); no one is a member any
    more, its pending invitations are cancelled and its invite links lead nowhere."""

    TOPIC = "membership:Organization.OrganizationDeleted"
    name: str

    def apply(self, org: Organization) -> None:
        org.deleted = True
        for key in list(org.pending_by_email.values()):
            _close_invitation(org, org.invitations[key].id, "cancelled")


class PersonErased(Event):
    """An operator erased a person (GDPR Art. 17) by deleting their key (`pseudonym`): their personal data in
    every event reads as a placeholder from now on. In this organization they stop being a member, their
    pending invitations are cancelled, and the state still holding their address or name holds the
    placeholder instead, in every process that caches the organization (`apply` runs there too)."""

    TOPIC = "membership:Organization.PersonErased"
    ERASES_KEY = True  # decoding one makes a process forget the key (membership.personal_data)
    pseudonym: str
    member_id: UUID | None  # their membership, which ends here (None: not a member)
    scrubbed_member_id: UUID | None  # a deleted organization's member record, kept as it was but unnamed
    invitation_ids: list[UUID]  # every invitation to them, which now names the placeholder
    cancelled_invitation_ids: list[UUID]  # those of them pending until now

    def apply(self, org: Organization) -> None:
        address = erased_address(self.pseudonym)
        if self.member_id is not None:
            _drop_member(org, self.member_id)
        if self.scrubbed_member_id is not None:
            key = key_of(self.scrubbed_member_id)
            del org.member_by_email[org.members[key].email]
            change(org.members, self.scrubbed_member_id, email=address, name=erased_name(self.pseudonym))
            org.member_by_email[address] = key
        for invitation_id in self.cancelled_invitation_ids:
            _close_invitation(org, invitation_id, "cancelled")
        for invitation_id in self.invitation_ids:
            change(org.invitations, invitation_id, email=address)


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


def required_fields(event_class: type) -> frozenset[str]:
    """The fields an event of this class must carry: those its class declares without a default."""
    required = _REQUIRED.get(event_class)
    if required is None:
        required = _REQUIRED[event_class] = frozenset(
            f.name
            for f in dataclasses.fields(event_class)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
    return required


_REQUIRED: dict[type, frozenset[str]] = {}


def missing_fields(event: Any) -> list[str]:
    """The required fields a decoded event lacks: a field was added to its class without a default or an
    upcaster, so events stored before cannot be read as it is declared (the stored fixtures' guard)."""
    return sorted(required_fields(type(event)) - vars(event).keys())


def event_types() -> list[str]:
    """The name of every type of event an organization records (`RoleChanged`...), in the order declared."""
    return [name for name, cls in globals().items() if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event]


# -- state changes shared by several events: records and the indexes that point at them ------------------------
def _add_member(org: Organization, member: Member) -> None:
    key = key_of(member.id)
    org.members[key] = member
    org.member_by_user[member.user_id] = key
    org.member_by_email[member.email] = key
    _count_role(org, member.role_id, +1)


def _drop_member(org: Organization, member_id: UUID) -> None:
    member = org.members.pop(key_of(member_id))
    del org.member_by_user[member.user_id]
    del org.member_by_email[member.email]
    _count_role(org, member.role_id, -1)


def _set_role(org: Organization, member_id: UUID, role_id: UUID) -> None:
    _count_role(org, org.members[key_of(member_id)].role_id, -1)
    change(org.members, member_id, role_id=role_id)
    _count_role(org, role_id, +1)


def _count_role(org: Organization, role_id: UUID, delta: int) -> None:
    key = key_of(role_id)
    count = org.role_member_counts.get(key, 0) + delta
    if count:
        org.role_member_counts[key] = count
    else:
        org.role_member_counts.pop(key, None)


def _forget_what_no_rule_needs(org: Organization, now: datetime) -> None:
    """Closed invitations whose tokens have expired leave the state: no rule refers to them any more (a token
    of one is merely not valid), and an organization inviting for years would otherwise keep every one it
    ever sent (their history is in the events and the read models). So do the lists of who used a deleted or
    expired invite link ("used it already" is asked only of a live one), and the links both deleted and
    expired (a code of one is merely not valid; an expired link that was not deleted still holds its role).
    Looked for once a day: by the first invitation sent on a day (UTC) other than the latest one's. Decided
    by the state and the event alone, so every replay and every snapshot, old ones too, forgets the same
    things at the same event."""
    latest = next(reversed(org.invitations.values()), None)
    if latest is not None and (latest.expires_at - timedelta(days=latest.expires_in_days)).date() == now.date():
        return
    for key in [key for key, i in org.invitations.items() if i.status != "pending" and i.expires_at < now]:
        del org.invitations[key]
    for key in [k for k, link in org.links.items() if (link.deleted or link.expires_at < now) and k in org.redemptions]:
        del org.redemptions[key]
    for key in [k for k, link in org.links.items() if link.deleted and link.expires_at < now]:
        del org.links[key]


def _close_invitation(org: Organization, invitation_id: UUID, status: InvitationStatus) -> None:
    invitation = change(org.invitations, invitation_id, status=status)
    if org.pending_by_email.get(invitation.email) == key_of(invitation_id):
        del org.pending_by_email[invitation.email]
