"""Use cases through `Organizations`: tokens, links, clock, secrets at rest.

The rules are the application's and the aggregate's, whatever the store: they run on SQLite. What the
store itself decides or gives back — the positions it assigns, what it keeps at rest, its answer for an
unknown id, the stored events and snapshots read back — is tested on PostgreSQL too (BOTH_STORES).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from membership import exceptions as err
from membership.application import Organizations, Receipt, project_organization
from membership.inputs import Actor
from membership.organization import Organization, system_role_id
from membership.state import Invitation
from membership.tokens import INVITATION, INVITE_LINK, TokenSigner
from tests.conftest import STORES, store_url
from tests.factories import Clock, new_actor

SECRET_KEY = b"k" * 32
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
BOTH_STORES = pytest.mark.parametrize("store", STORES, indirect=True)


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite, unless the test asks for both stores (BOTH_STORES)."""
    return store_url(request, tmp_path)


@dataclass
class World:
    """An organization with an Owner, an Admin and a Viewer, on a fresh application."""

    app: Organizations
    clock: Clock
    org_id: UUID
    owner: Actor
    admin: Actor
    viewer: Actor

    def role(self, key: str) -> UUID:
        return system_role_id(self.org_id, key)

    def member_id(self, user: Actor) -> UUID | None:
        with self.app.reading(self.org_id) as org:
            member = org.member_for_user(user.user_id)
        return None if member is None else member.id

    def role_of(self, user: Actor) -> UUID:
        member_id = self.member_id(user)
        with self.app.reading(self.org_id) as org:
            return org.get_member(member_id).role_id  # type: ignore[arg-type]

    def invite(self, email: str, key: str = "viewer", by: Actor | None = None, days: int = 7) -> Receipt:
        return self.app.invite_member(self.org_id, by or self.owner, email, self.role(key), days)

    def join(self, key: str = "viewer", label: str = "user") -> Actor:
        user = new_actor(label)
        self.app.accept_invitation(user, secret(self.invite(user.email, key)))
        return user

    def link(self, key: str = "viewer", max_uses: int = 0, days: int = 7) -> Receipt:
        return self.app.create_invite_link(self.org_id, self.owner, self.role(key), max_uses, days)

    def invitation(self, invitation_id: UUID | None) -> Invitation:
        assert invitation_id is not None
        with self.app.reading(self.org_id) as org:
            return org.get_invitation(invitation_id)

    def status(self, invitation_id: UUID | None) -> str:
        invitation = self.invitation(invitation_id)
        with self.app.reading(self.org_id) as org:
            return org.invitation_status(invitation, self.clock())

    def stored_events(self) -> list[Any]:
        return list(self.app.repository.event_store.get(self.org_id))


def secret(receipt: Receipt) -> str:
    assert receipt.secret is not None
    return receipt.secret


def notifications(app: Organizations) -> list[Any]:
    return list(app.recorder.select_notifications(start=1, limit=1000))


def tamper(token: str, index: int) -> str:
    """The same token with one decoded byte flipped."""
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.fixture
def world(make_organizations: Callable[..., Organizations]) -> World:
    """On the test's store (see `store`)."""
    clock = Clock(START)
    app = make_organizations(clock=clock)
    owner = new_actor("owner")
    org_id = app.create_organization(owner, "Acme").organization_id
    w = World(app, clock, org_id, owner, admin=owner, viewer=owner)
    w.admin, w.viewer = w.join("admin", "admin"), w.join("viewer", "viewer")
    return w


# -- organizations -------------------------------------------------------------
def test_creating_an_organization_makes_the_creator_its_only_owner(
    make_organizations: Callable[..., Organizations],
) -> None:
    app, creator = make_organizations(), new_actor("creator")
    receipt = app.create_organization(creator, "Acme")
    org = app.get_organization(receipt.organization_id)
    assert receipt.id == receipt.organization_id == org.id
    assert [m.user_id for m in org.members.values()] == [creator.user_id]
    assert org.owner.role_id == system_role_id(org.id, "owner")


def test_user_can_belong_to_many_organizations_with_different_roles(world: World) -> None:
    own_org = world.app.create_organization(world.viewer, "Viewer's own").organization_id
    assert world.role_of(world.viewer) == world.role("viewer")
    mine = world.app.get_organization(own_org)
    assert mine.owner.user_id == world.viewer.user_id


# -- invitations and tokens ----------------------------------------------------
@BOTH_STORES
def test_invitee_joins_with_the_token_from_the_receipt(world: World) -> None:
    user = new_actor()
    invited = world.invite(user.email.upper(), "admin")
    joined = world.app.accept_invitation(user, secret(invited))
    assert joined.id == world.member_id(user) is not None
    assert joined.position is not None and invited.position is not None and joined.position > invited.position
    assert world.role_of(user) == world.role("admin")
    assert world.status(invited.id) == "accepted"


def test_invitation_token_is_long_url_safe_and_current(world: World) -> None:
    invited = world.invite(new_actor().email)
    token = secret(invited)
    assert len(token) >= 40
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert invited.id is not None
    assert world.app.invitation_token(world.org_id, invited.id) == token


def test_invitation_records_the_inviter_and_a_7_day_default_expiry(world: World) -> None:
    invited = world.app.invite_member(world.org_id, world.admin, " New@Example.com ", world.role("viewer"))
    invitation = world.invitation(invited.id)
    assert invitation.email == "new@example.com"
    assert invitation.invited_by == world.admin.user_id
    assert invitation.expires_at == START + timedelta(days=7)


def test_accepting_with_another_email_leaves_the_invitation_usable(world: World) -> None:
    invitee = new_actor()
    token = secret(world.invite(invitee.email))
    before = len(notifications(world.app))
    with pytest.raises(err.InvitationEmailMismatchError):
        world.app.accept_invitation(new_actor("intruder"), token)
    assert len(notifications(world.app)) == before
    world.app.accept_invitation(invitee, token)
    assert world.member_id(invitee) is not None


def test_expired_invitation_cannot_be_accepted(world: World) -> None:
    user = new_actor()
    token = secret(world.invite(user.email, days=2))
    world.clock.advance(days=2)
    with pytest.raises(err.InvitationExpiredError):
        world.app.accept_invitation(user, token)
    assert world.member_id(user) is None


def test_invitation_can_be_accepted_until_its_last_second(world: World) -> None:
    user = new_actor()
    token = secret(world.invite(user.email, days=2))
    world.clock.advance(days=2, seconds=-1)
    world.app.accept_invitation(user, token)
    assert world.member_id(user) is not None


def test_expiry_is_reported_without_an_event(world: World) -> None:
    invited = world.invite(new_actor().email, days=1)
    before = notifications(world.app)
    assert world.status(invited.id) == "pending"
    world.clock.advance(days=1)
    assert world.status(invited.id) == "expired"
    assert notifications(world.app) == before


def test_cancelled_invitation_cannot_be_accepted(world: World) -> None:
    user = new_actor()
    invited = world.invite(user.email)
    assert invited.id is not None
    world.app.cancel_invitation(world.org_id, world.admin, invited.id)
    with pytest.raises(err.InvitationCancelledError):
        world.app.accept_invitation(user, secret(invited))


def test_accepted_invitation_cannot_be_accepted_again(world: World) -> None:
    user = new_actor()
    token = secret(world.invite(user.email))
    world.app.accept_invitation(user, token)
    with pytest.raises(err.InvitationAlreadyAcceptedError):
        world.app.accept_invitation(user, token)


def test_resend_gives_a_new_token_and_expiry_and_the_old_token_fails(world: World) -> None:
    user = new_actor()
    invited = world.invite(user.email, days=3)
    assert invited.id is not None
    later = world.clock.advance(days=1)
    resent = world.app.resend_invitation(world.org_id, world.admin, invited.id)
    assert (resent.id, resent.organization_id) == (invited.id, world.org_id)
    assert secret(resent) != secret(invited)
    assert world.invitation(invited.id).expires_at == later + timedelta(days=3)
    with pytest.raises(err.InvitationReplacedError):
        world.app.accept_invitation(user, secret(invited))
    world.app.accept_invitation(user, secret(resent))
    assert world.member_id(user) is not None


def test_expired_invitation_can_be_resent_and_accepted(world: World) -> None:
    user = new_actor()
    invited = world.invite(user.email, days=1)
    assert invited.id is not None
    world.clock.advance(days=3)
    resent = world.app.resend_invitation(world.org_id, world.owner, invited.id, expires_in_days=2)
    assert world.status(invited.id) == "pending"
    world.app.accept_invitation(user, secret(resent))
    assert world.status(invited.id) == "accepted"


def test_expired_invitation_can_be_cancelled(world: World) -> None:
    invited = world.invite(new_actor().email, days=1)
    assert invited.id is not None
    world.clock.advance(days=3)
    world.app.cancel_invitation(world.org_id, world.owner, invited.id)
    assert world.status(invited.id) == "cancelled"


def test_new_invitation_replaces_an_expired_one(world: World) -> None:
    user = new_actor()
    old = world.invite(user.email, days=1)
    world.clock.advance(days=1)
    new = world.invite(user.email)
    assert world.status(old.id) == "expired"
    with pytest.raises(err.InvitationExpiredError):
        world.app.accept_invitation(user, secret(old))
    world.app.accept_invitation(user, secret(new))


def test_cannot_invite_an_email_with_a_pending_invitation(world: World) -> None:
    email = new_actor().email
    world.invite(email)
    with pytest.raises(err.AlreadyInvitedError):
        world.invite(email.upper(), "admin", by=world.admin)


def test_cannot_invite_an_existing_member(world: World) -> None:
    with pytest.raises(err.AlreadyMemberError):
        world.invite(world.viewer.email.upper())


def test_removed_member_can_be_invited_again(world: World) -> None:
    member_id = world.member_id(world.viewer)
    assert member_id is not None
    world.app.remove_member(world.org_id, world.admin, member_id)
    world.app.accept_invitation(world.viewer, secret(world.invite(world.viewer.email, "admin")))
    assert world.role_of(world.viewer) == world.role("admin")


def test_member_who_left_can_be_invited_again(world: World) -> None:
    left = world.app.leave(world.org_id, world.viewer)
    assert left.id is not None and left.position is not None
    world.app.accept_invitation(world.viewer, secret(world.invite(world.viewer.email)))
    assert world.member_id(world.viewer) not in (None, left.id)


def test_pending_invitation_cap_is_configurable(make_organizations: Callable[..., Organizations]) -> None:
    owner, app = new_actor("owner"), make_organizations(max_pending_invitations=3)
    org_id = app.create_organization(owner, "Acme").organization_id
    for _ in range(3):
        app.invite_member(org_id, owner, new_actor().email, system_role_id(org_id, "viewer"))
    with pytest.raises(err.TooManyPendingInvitationsError):
        app.invite_member(org_id, owner, new_actor().email, system_role_id(org_id, "viewer"))
    assert len(app.get_organization(org_id).pending_by_email) == 3


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "!!!!", "x" * 500, "A" * 66, base64.urlsafe_b64encode(b"\x02" + b"\x00" * 48).decode()],
    ids=["empty", "word", "symbols", "long", "zeros", "wrong-version"],
)
def test_garbage_invitation_token_is_refused(world: World, token: str) -> None:
    with pytest.raises(err.InvalidInvitationTokenError):
        world.app.accept_invitation(new_actor(), token)


def test_forged_invitation_token_is_refused(world: World) -> None:
    user = new_actor()
    invited = world.invite(user.email)
    assert invited.id is not None
    nonce = world.invitation(invited.id).token_nonce
    forged = TokenSigner(b"not the server key!!").derive(INVITATION, world.org_id, invited.id, nonce)
    with pytest.raises(err.InvalidInvitationTokenError):
        world.app.accept_invitation(user, forged)
    assert world.status(invited.id) == "pending"


@pytest.mark.parametrize("index", [0, 1, 20, 40, 48], ids=["version", "organization", "invitation", "mac", "mac-end"])
def test_tampered_invitation_token_is_refused(world: World, index: int) -> None:
    user = new_actor()
    invited = world.invite(user.email)
    with pytest.raises(err.InvalidInvitationTokenError):
        world.app.accept_invitation(user, tamper(secret(invited), index))
    assert world.status(invited.id) == "pending"


def test_token_for_another_organization_is_refused(world: World) -> None:
    user = new_actor()
    invited = world.invite(user.email)
    other_org = world.app.create_organization(world.owner, "Other").organization_id
    assert invited.id is not None
    moved = TokenSigner(SECRET_KEY).derive(INVITATION, other_org, invited.id, world.invitation(invited.id).token_nonce)
    with pytest.raises(err.InvalidInvitationTokenError):
        world.app.accept_invitation(user, moved)


def test_token_for_an_unknown_organization_is_refused(world: World) -> None:
    token = TokenSigner(SECRET_KEY).derive(INVITATION, uuid4(), uuid4(), "nonce")
    with pytest.raises(err.InvalidInvitationTokenError):
        world.app.accept_invitation(new_actor(), token)


def test_link_code_is_not_an_invitation_token(world: World) -> None:
    with pytest.raises(err.InvalidInvitationTokenError):
        world.app.accept_invitation(new_actor(), secret(world.link()))


def test_invitation_token_is_not_a_link_code(world: World) -> None:
    user = new_actor()
    with pytest.raises(err.InvalidInviteLinkCodeError):
        world.app.accept_invite_link(user, secret(world.invite(user.email)))
    assert world.member_id(user) is None


# -- invite links --------------------------------------------------------------
def test_user_joins_with_a_link_code(world: World) -> None:
    created = world.link("admin", max_uses=2)
    assert created.id is not None
    assert world.app.invite_link_code(world.org_id, created.id) == secret(created)
    user = new_actor()
    joined = world.app.accept_invite_link(user, secret(created))
    assert joined.id == world.member_id(user) is not None
    assert world.role_of(user) == world.role("admin")
    assert world.app.get_organization(world.org_id).get_invite_link(created.id).use_count == 1


def test_expired_link_is_refused(world: World) -> None:
    code = secret(world.link(days=1))
    world.clock.advance(days=1)
    with pytest.raises(err.InviteLinkExpiredError):
        world.app.accept_invite_link(new_actor(), code)


def test_deleted_link_is_refused(world: World) -> None:
    created = world.link()
    assert created.id is not None
    world.app.delete_invite_link(world.org_id, world.admin, created.id)
    with pytest.raises(err.InviteLinkDeletedError):
        world.app.accept_invite_link(new_actor(), secret(created))


def test_used_up_link_is_refused(world: World) -> None:
    code = secret(world.link(max_uses=2))
    world.app.accept_invite_link(new_actor(), code)
    world.app.accept_invite_link(new_actor(), code)
    with pytest.raises(err.InviteLinkUsedUpError):
        world.app.accept_invite_link(new_actor(), code)


def test_user_redeems_a_link_at_most_once(world: World) -> None:
    user, code = new_actor(), secret(world.link())
    world.app.accept_invite_link(user, code)
    world.app.leave(world.org_id, user)
    with pytest.raises(err.InviteLinkAlreadyUsedError):
        world.app.accept_invite_link(user, code)


def test_member_cannot_redeem_a_link(world: World) -> None:
    with pytest.raises(err.AlreadyMemberError):
        world.app.accept_invite_link(world.viewer, secret(world.link("admin")))
    assert world.role_of(world.viewer) == world.role("viewer")


def test_joining_by_link_cancels_the_pending_invitation(world: World) -> None:
    user = new_actor()
    invited = world.invite(user.email)
    world.app.accept_invite_link(user, secret(world.link("admin")))
    assert world.status(invited.id) == "cancelled"
    assert user.email not in world.app.get_organization(world.org_id).pending_by_email
    with pytest.raises(err.InvitationCancelledError):
        world.app.accept_invitation(user, secret(invited))


@pytest.mark.parametrize("code", ["", "nope", "x" * 500], ids=["empty", "word", "long"])
def test_garbage_link_code_is_refused(world: World, code: str) -> None:
    with pytest.raises(err.InvalidInviteLinkCodeError):
        world.app.accept_invite_link(new_actor(), code)


def test_forged_link_code_is_refused(world: World) -> None:
    created = world.link()
    assert created.id is not None
    nonce = world.app.get_organization(world.org_id).get_invite_link(created.id).code_nonce
    forged = TokenSigner(b"not the server key!!").derive(INVITE_LINK, world.org_id, created.id, nonce)
    with pytest.raises(err.InvalidInviteLinkCodeError):
        world.app.accept_invite_link(new_actor(), forged)
    with pytest.raises(err.InvalidInviteLinkCodeError):
        world.app.accept_invite_link(new_actor(), tamper(secret(created), 40))


# -- secrets at rest -----------------------------------------------------------
@BOTH_STORES
def test_no_invitation_token_or_link_code_is_stored(world: World) -> None:
    user = new_actor()
    invited = world.invite(user.email)
    assert invited.id is not None
    secrets = [
        secret(invited),
        secret(world.app.resend_invitation(world.org_id, world.owner, invited.id)),
        secret(world.invite(new_actor().email, "admin")),
        secret(world.link()),
        secret(world.link("admin", max_uses=3)),
    ]
    world.app.accept_invitation(user, secrets[1])
    world.app.accept_invite_link(new_actor(), secrets[3])
    stored = notifications(world.app)
    assert len(stored) > 10
    for notification in stored:
        event_text = repr(world.app.mapper.to_domain_event(notification).__dict__)
        for token in secrets:
            mac = base64.urlsafe_b64decode(token + "==")[33:]
            assert token.encode() not in notification.state
            assert mac.hex().encode() not in notification.state
            assert token not in event_text and mac.hex() not in event_text


# -- members -------------------------------------------------------------------
def test_owner_transfers_ownership_and_becomes_admin(world: World) -> None:
    target = world.member_id(world.viewer)
    assert target is not None
    before = len(world.stored_events())
    receipt = world.app.transfer_ownership(world.org_id, world.owner, target)
    [event] = world.stored_events()[before:]
    assert isinstance(event, Organization.OwnershipTransferred) and receipt.id == target
    assert (world.role_of(world.viewer), world.role_of(world.owner)) == (world.role("owner"), world.role("admin"))


def test_admin_cannot_transfer_ownership(world: World) -> None:
    target = world.member_id(world.viewer)
    assert target is not None
    with pytest.raises(err.OwnerOnlyError):
        world.app.transfer_ownership(world.org_id, world.admin, target)


def test_change_to_the_same_role_records_nothing(world: World) -> None:
    target = world.member_id(world.viewer)
    assert target is not None
    before = notifications(world.app)
    receipt = world.app.change_role(world.org_id, world.admin, target, world.role("viewer"))
    assert receipt.position is None
    assert notifications(world.app) == before


def test_update_role_without_change_records_nothing(world: World) -> None:
    role_id = world.app.create_role(world.org_id, world.admin, "Payer", "Pays", ["manage:billing"]).id
    assert role_id is not None
    before = notifications(world.app)
    receipt = world.app.update_role(world.org_id, world.admin, role_id, name="Payer", permissions=["manage:billing"])
    assert receipt.position is None
    assert notifications(world.app) == before


def test_refused_command_changes_nothing_and_the_next_one_works(world: World) -> None:
    before, version = notifications(world.app), world.app.get_organization(world.org_id).version
    with pytest.raises(err.MissingPermissionError):
        world.invite(new_actor().email, by=world.viewer)
    with pytest.raises(err.InvitationEmailMismatchError):
        world.app.accept_invitation(new_actor(), secret(world.invite(new_actor().email)))
    assert len(notifications(world.app)) == len(before) + 1
    assert world.app.get_organization(world.org_id).version == version + 1
    world.join()


# -- unknown organizations -----------------------------------------------------
COMMANDS: dict[str, Callable[[Organizations, UUID, Actor], Any]] = {
    "invite": lambda app, org, a: app.invite_member(org, a, "x@example.com", system_role_id(org, "viewer")),
    "resend": lambda app, org, a: app.resend_invitation(org, a, uuid4()),
    "cancel": lambda app, org, a: app.cancel_invitation(org, a, uuid4()),
    "create_link": lambda app, org, a: app.create_invite_link(org, a, system_role_id(org, "viewer")),
    "delete_link": lambda app, org, a: app.delete_invite_link(org, a, uuid4()),
    "change_role": lambda app, org, a: app.change_role(org, a, uuid4(), system_role_id(org, "viewer")),
    "remove": lambda app, org, a: app.remove_member(org, a, uuid4()),
    "leave": lambda app, org, a: app.leave(org, a),
    "transfer": lambda app, org, a: app.transfer_ownership(org, a, uuid4()),
    "create_role": lambda app, org, a: app.create_role(org, a, "Role", "", []),
    "update_role": lambda app, org, a: app.update_role(org, a, uuid4(), name="Renamed"),
    "delete_role": lambda app, org, a: app.delete_role(org, a, uuid4()),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_unknown_organization_looks_like_one_you_do_not_belong_to(world: World, command: Callable[..., Any]) -> None:
    stranger = new_actor("stranger")
    with pytest.raises(err.NotAMemberError) as unknown:
        command(world.app, uuid4(), stranger)
    with pytest.raises(err.NotAMemberError) as not_mine:
        command(world.app, world.org_id, stranger)
    assert (type(unknown.value), str(unknown.value)) == (type(not_mine.value), str(not_mine.value))


@BOTH_STORES
def test_unknown_organization_cannot_be_read(world: World) -> None:
    with pytest.raises(err.NotAMemberError):
        world.app.get_organization(uuid4())
    with pytest.raises(err.NotAMemberError):
        world.app.invitation_token(uuid4(), uuid4())


# -- events, clock and replay --------------------------------------------------
def test_events_are_timestamped_by_the_injected_clock(world: World) -> None:
    assert {e.timestamp for e in world.stored_events()} == {START}
    later = world.clock.advance(days=3, minutes=7)
    receipt = world.invite(new_actor().email)
    event = world.stored_events()[-1]
    assert isinstance(event, Organization.MemberInvited) and event.invitation_id == receipt.id
    assert (event.timestamp, event.expires_at) == (later, later + timedelta(days=7))


def test_every_stored_event_names_its_actor(world: World) -> None:
    user = new_actor()
    world.app.accept_invite_link(user, secret(world.link()))
    actors = {a.user_id: a.email for a in (world.owner, world.admin, world.viewer, user)}
    for event in world.stored_events():
        assert actors[event.actor_id] == event.actor_email, type(event).__name__


@BOTH_STORES
def test_stored_events_replay_to_the_current_state(world: World) -> None:
    world.app.accept_invite_link(new_actor(), secret(world.link("admin")))
    world.app.create_role(world.org_id, world.owner, "Auditor", "", ["view:billing"])
    assert project_organization(None, world.stored_events()) == world.app.get_organization(world.org_id)


@BOTH_STORES
def test_state_loaded_from_snapshots_equals_the_replayed_state(
    make_organizations: Callable[..., Organizations],
) -> None:
    writer = make_organizations(snapshot_interval=3, snapshot_in_commands=True)
    owner = new_actor("owner")
    org_id = writer.create_organization(owner, "Acme").organization_id
    for _ in range(4):
        code = secret(writer.create_invite_link(org_id, owner, system_role_id(org_id, "viewer"), max_uses=5))
        writer.accept_invite_link(new_actor(), code)
    reader = make_organizations(snapshot_interval=3)
    assert reader.snapshots is not None and list(reader.snapshots.get(org_id))
    replayed = project_organization(None, writer.repository.event_store.get(org_id))
    assert reader.get_organization(org_id) == replayed == writer.get_organization(org_id)
