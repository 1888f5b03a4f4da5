"""Random command sequences against the Organizations application and a small reference model.

A hypothesis `RuleBasedStateMachine` drives one organization (in-memory store,
a clock the machine advances, a pending-invitation cap of 2) with six users,
so that members and non-members, collisions and refusals all come up often.
Actors are named users or, so that more commands get through, whoever is now
the Owner, the k-th member, or the least-privileged non-Owner holding
manage:members / manage:roles (escalation attempts); joiners are named users, a
non-member, a former member or someone with an open invitation. `note()` shows
whom a reference meant. An `initialize` step gives a head start through the
same rule methods: custom roles, a "deputy" with a limited managing role,
invited users who accept, invitations left pending, perhaps a link. A rule
jumps the clock onto (or just before) an expiry, so boundaries are exercised.

Each rule first asks the *model* (plain dicts, the rules written down again
from the issue, never calling the domain's guards) whether the command should
succeed:

* refused: the application must raise one of the exception classes the model
  names. When several rules are broken at once any of them is accepted (the
  order of the checks is not part of the contract), except that a caller who
  is not a member, lacks the permission, or is not the Owner for an Owner-only
  act learns only that; and an invitation token replaced by a resend is
  refused as replaced (any earlier token of it, however many resends ago);
* allowed: it must succeed (no-ops, like giving a member the role they hold or
  an update that changes nothing, must record no event), and the model is
  updated.

After every step the issue's invariants are checked on the aggregate, which
is also compared with the model (members, invitations, links, roles, owner)
and with its own indexes; the stored events, read from the event store and
not the cache, must replay into an equal aggregate, and the state must
survive a snapshot round trip through the store's JSON format.

Interpretations, where the issue leaves room (from the domain's docstrings and
messages, and the Team Management guide in the seeds):

* An invitation expires at `expires_at`: from that instant on it is expired.
  Expiry needs no event, so an expired invitation stays *open*: it still counts
  against the pending-invitation cap and can still be cancelled (the guide:
  "Too many pending invitations - review and cancel expired or unnecessary
  invitations"), it can be resent (a new token and a new expiry revive it), it
  still holds its role (the role cannot be deleted), and re-inviting the same
  e-mail closes it as expired and opens a new one. Cancelling or resending a
  closed (accepted, cancelled or replaced) invitation is refused.
* A resend without `expires_in_days` uses the invitation's original number of
  days (a resend with explicit days does not change that number).
* Links: deleting a deleted link is "not found"; a link that is not deleted
  holds its role even when expired or used up. Joining by link cancels the
  joiner's open invitation. A user redeems a given link at most once, even
  after leaving.
* "Not while members or pending invitations hold them" applies to deleting a
  custom role; updating a role that members hold is allowed (by someone who
  holds all of its permissions, old and new).
* The no-escalation rule compares closed permission sets (manage implies
  view), the Owner is exempt, and the Owner role is never assignable. It also
  applies to cancelling or resending an invitation and deleting a link (they
  act on the role the item grants), and to editing or deleting a custom role.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Snapshot
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from membership import exceptions as err
from membership.application import Organizations, project_organization
from membership.inputs import Actor

T = TypeVar("T")

# -- the world ---------------------------------------------------------------
RESOURCES = ("members", "roles", "servers", "instances", "projects", "deployments", "settings", "billing")
EVERY_PERMISSION = frozenset(f"{action}:{resource}" for action in ("view", "manage") for resource in RESOURCES)
VIEW_ALL = frozenset(f"view:{resource}" for resource in RESOURCES)
SYSTEM_PERMISSIONS = {
    "owner": EVERY_PERMISSION,
    "admin": EVERY_PERMISSION,
    "developer": VIEW_ALL | {"manage:projects", "manage:instances", "manage:deployments"},
    "viewer": VIEW_ALL,
}
SYSTEM_NAMES = {"owner": "Owner", "admin": "Admin", "developer": "Developer", "viewer": "Viewer"}

USERS = {
    "alice": Actor("alice", "alice@example.com", "Alice"),  # creates the organization: the first Owner
    "bob": Actor("bob", "bob@example.com", "Bob"),
    "carol": Actor("carol", "Carol@Example.COM", "Carol"),  # signs in with a mixed-case e-mail
    "dave": Actor("dave", "dave@example.com", "Dave"),
    "erin": Actor("erin", "erin@example.com", "Erin"),
    "frank": Actor("frank", "frank@example.com", "Frank"),
}
USER_NAMES = sorted(USERS)
INVITE_EMAILS = [
    "alice@example.com",
    "bob@example.com",
    "  CAROL@example.com ",
    "carol@example.com",
    "dave@example.com",
    "Erin@Example.com",
    "frank@example.com",
    "outsider@example.com",  # no such user: the invitation can never be accepted
    "not-an-email",
]
# Permission templates for custom roles (before closure); "bogus" is refused.
TEMPLATES = {
    "nothing": [],
    "members": ["manage:members"],
    "members+roles": ["manage:members", "manage:roles"],
    "view-all": sorted(VIEW_ALL),
    "developer+members": sorted(SYSTEM_PERMISSIONS["developer"] | {"manage:members"}),
    "all-but-billing": sorted(EVERY_PERMISSION - {"manage:billing"}),
    "everything": sorted(EVERY_PERMISSION),
    "bogus": ["manage:universe"],
}
ROLE_NAMES = ["Ops", "ops", "Support", "  Release   Manager ", "Admin", "viewer", "   "]
ORGANIZATION_NAMES = ["Acme", "Acme  Corp ", "acme", "   ", "Tab\tCo", "x" * 201]
ROLE_REFS = ["owner", "admin", "developer", "viewer", "custom0", "custom1", "custom2", "missing"]
INVITATION_DAYS = [1, 2, 7, 30, 0, 31]
LINK_DAYS = [1, 3, 365, 0, 366]
LINK_MAX_USES = [1, 0, 2, -1]
STEPS = [timedelta(days=1), timedelta(hours=12), timedelta(days=2), timedelta(days=7), timedelta(days=31)]
MAX_PENDING = 2
START = datetime(2030, 1, 1, tzinfo=UTC)

users = st.sampled_from(USER_NAMES)
# Who acts, or whom a command is about: a user by name, or (so that something happens) whoever is currently
# the Owner, the k-th member, or the "manager" / "role manager": the non-Owner member with the fewest
# permissions among those who hold manage:members / manage:roles (escalation attempts).
ACTOR_REFS = ["owner", "manager", "role manager", "member0", "member1", "member2", "member3", *USER_NAMES]
actors = st.sampled_from(ACTOR_REFS)
indexes = st.integers(min_value=0, max_value=7)
# Who redeems a link or accepts an invitation: anyone by name, the first or second user who is not a member,
# someone who was a member and is no longer, or someone with an open invitation.
JOINER_REFS = ["non-member0", "non-member1", "former member", "someone invited", *USER_NAMES]
joiners = st.sampled_from(JOINER_REFS)


def closed(permissions: Iterable[str]) -> frozenset[str]:
    """manage:X brings view:X."""
    result = set(permissions)
    result |= {"view:" + p.split(":", 1)[1] for p in result if p.startswith("manage:")}
    return frozenset(result)


def normalized(email: str) -> str:
    return email.strip().lower()


def looks_like_email(email: str) -> bool:
    local, at, domain = normalized(email).partition("@")
    return bool(local) and bool(at) and "." in domain


def role_name(name: str) -> str:
    return " ".join(name.split())


def tampered(secret: str, where: int) -> str:
    """The same token with one character changed: in the organization id, the item id, or the MAC."""
    i = (5, 30, len(secret) - 5)[where % 3]
    return secret[:i] + ("B" if secret[i] == "A" else "A") + secret[i + 1 :]


Expected = set[type[err.MembershipError]]


class OrganizationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.app = Organizations(
            {"PERSISTENCE_MODULE": "eventsourcing.popo"},
            secret_key=b"k" * 32,
            clock=lambda: self.now,
            snapshot_interval=10_000,
            max_pending_invitations=MAX_PENDING,
        )
        receipt = self.app.create_organization(USERS["alice"], "Acme")
        self.org_id = receipt.organization_id
        org = self.app.get_organization(self.org_id)
        # -- the reference model: plain dicts --
        self.system_roles = {str(role.key): role_id for role_id, role in org.roles.items() if role.system}
        assert set(self.system_roles) == set(SYSTEM_PERMISSIONS)
        self.roles: dict[str, dict[str, Any]] = {
            role_id: {"name": SYSTEM_NAMES[key], "permissions": SYSTEM_PERMISSIONS[key], "system": True}
            for key, role_id in self.system_roles.items()
        }
        (owner_member_id,) = org.members
        self.members: dict[str, dict[str, Any]] = {
            "alice": {"member_id": owner_member_id, "role": self.system_roles["owner"], "email": "alice@example.com"}
        }
        self.owner = "alice"
        self.name = "Acme"
        self.past_member_ids: dict[str, list[str]] = {}
        self.custom_roles_ever: list[str] = []
        # invitation id -> email, role, expires_at, days, status (pending/accepted/cancelled/replaced), token
        self.invitations: dict[str, dict[str, Any]] = {}
        # Closed invitations whose tokens expired leave the state when the first invitation of a day (other than
        # the latest one's) is sent: their tokens are then merely not valid.
        self.forgotten: dict[str, dict[str, Any]] = {}
        self.tokens: list[tuple[str, str]] = []  # every token ever handed out: (invitation id, token)
        # link id -> role, max_uses, use_count, expires_at, deleted, redeemed_by (user names), code
        self.links: dict[str, dict[str, Any]] = {}
        self.missing_id = uuid4()

    def teardown(self) -> None:
        try:
            self.replaying_the_stored_events_rebuilds_an_equal_aggregate()
        finally:
            self.app.close()

    # -- model helpers -------------------------------------------------------
    def permissions(self, user: str) -> frozenset[str]:
        return frozenset(self.roles[self.members[user]["role"]]["permissions"])

    def gate(self, user: str, permission: str) -> Expected:
        """Not a member, or lacking the permission: that is all the caller learns."""
        if user not in self.members:
            return {err.NotAMemberError}
        if permission not in self.permissions(user):
            return {err.MissingPermissionError}
        return set()

    def can_assign(self, user: str, role_id: str) -> Expected:
        role = self.roles.get(role_id)
        if role is None:
            return {err.RoleNotFoundError}
        if role_id == self.system_roles["owner"]:
            return {err.OwnerRoleNotAssignableError}
        if user != self.owner and not role["permissions"] <= self.permissions(user):
            return {err.PrivilegeEscalationError}
        return set()

    def open_invitation_refusals(self, user: str, invitation: dict[str, Any] | None) -> Expected:
        """Resending or cancelling: a member manager, an invitation still open, a role they may grant."""
        expected = self.gate(user, "manage:members")
        if expected:
            return expected
        if invitation is None:
            return {err.InvitationNotFoundError}
        if not self.is_open(invitation):
            expected.add(err.InvitationNotPendingError)
        return expected | self.can_assign(user, invitation["role"])

    def can_manage(self, user: str, target: str) -> Expected:
        if user != self.owner and not self.permissions(target) <= self.permissions(user):
            return {err.PrivilegeEscalationError}
        return set()

    def who(self, ref: str) -> str:
        """The user a reference stands for (see ACTOR_REFS and JOINER_REFS)."""
        if ref in ("manager", "role manager"):
            permission = "manage:members" if ref == "manager" else "manage:roles"
            managers = sorted(
                (len(self.permissions(u)), u)
                for u in self.members
                if u != self.owner and permission in self.permissions(u)
            )
            user = managers[0][1] if managers else self.owner
        elif ref == "owner":
            user = self.owner
        elif ref == "someone invited" and (invited := [u for u in USER_NAMES if self.is_invited(u)]):
            user = invited[0]
        elif ref.startswith("non-member") or ref in ("former member", "someone invited"):
            former = [u for u in sorted(self.past_member_ids) if u not in self.members]
            others = [u for u in USER_NAMES if u not in self.members] or USER_NAMES
            user = former[0] if ref == "former member" and former else others[int(ref[-1] == "1") % len(others)]
        elif ref.startswith("member"):
            members = sorted(self.members)
            user = members[int(ref[-1]) % len(members)]
        else:
            user = ref
        if user != ref:
            note(f"{ref} is {user}")
        return user

    def is_invited(self, user: str) -> bool:
        """Not a member, and an invitation to their e-mail is open."""
        return user not in self.members and self.open_invitation_for(normalized(USERS[user].email)) is not None

    def forget_closed_invitations(self) -> None:
        latest = next(reversed(self.invitations.values()), None)
        if latest is not None and (latest["expires_at"] - timedelta(days=latest["days"])).date() == self.now.date():
            return
        for invitation_id, invitation in list(self.invitations.items()):
            if not self.is_open(invitation) and invitation["expires_at"] < self.now:
                self.forgotten[invitation_id] = self.invitations.pop(invitation_id)
        for link_id, link in list(self.links.items()):
            if link["deleted"] or link["expires_at"] < self.now:
                link["redeemed_by"] = set()  # nobody can use it again: who did is forgotten
            if link["deleted"] and link["expires_at"] < self.now:
                del self.links[link_id]  # nor will anyone be told about it: its code is merely not valid

    def is_open(self, invitation: dict[str, Any]) -> bool:
        return bool(invitation["status"] == "pending")

    def is_expired(self, item: dict[str, Any]) -> bool:
        return bool(self.now >= item["expires_at"])

    def open_invitation_for(self, email: str) -> str | None:
        found = [i for i, inv in self.invitations.items() if inv["email"] == email and self.is_open(inv)]
        assert len(found) <= 1
        return found[0] if found else None

    def member_id_of(self, user: str) -> UUID:
        """The member id of a user; a stale one if they left, an unknown one if they never joined."""
        if user in self.members:
            return UUID(self.members[user]["member_id"])
        if self.past_member_ids.get(user):
            return UUID(self.past_member_ids[user][-1])
        return self.missing_id

    def role_id_of(self, ref: str) -> UUID:
        if ref == "deputy":  # only in the head start
            return next((UUID(i) for i, r in self.roles.items() if r["name"] == "Deputy"), self.missing_id)
        if ref in self.system_roles:
            return UUID(self.system_roles[ref])
        if ref.startswith("custom") and self.custom_roles_ever:
            return UUID(self.custom_roles_ever[int(ref[-1]) % len(self.custom_roles_ever)])
        return self.missing_id

    def invitation_id_at(self, ix: int) -> UUID:
        """-1: an unknown id; 0-5: an open invitation, if any; 6-7 (or none open): any invitation."""
        open_ids = [i for i, inv in self.invitations.items() if self.is_open(inv)]
        ids = open_ids if open_ids and ix < 6 else list(self.invitations)
        return UUID(ids[ix % len(ids)]) if ids and ix >= 0 else self.missing_id

    def link_id_at(self, ix: int) -> UUID:
        ids = list(self.links)
        return UUID(ids[ix % len(ids)]) if ids and ix >= 0 else self.missing_id

    def join(self, user: str, member_id: UUID | None, role_id: str) -> None:
        assert member_id is not None
        self.members[user] = {"member_id": str(member_id), "role": role_id, "email": normalized(USERS[user].email)}

    def drop(self, user: str) -> None:
        member = self.members.pop(user)
        self.past_member_ids.setdefault(user, []).append(member["member_id"])

    def role_in_use(self, role_id: str) -> bool:
        return (
            any(m["role"] == role_id for m in self.members.values())
            or any(inv["role"] == role_id and self.is_open(inv) for inv in self.invitations.values())
            or any(link["role"] == role_id and not link["deleted"] for link in self.links.values())
        )

    def name_taken(self, name: str, renaming: str | None = None) -> bool:
        return any(rid != renaming and r["name"].casefold() == name.casefold() for rid, r in self.roles.items())

    @staticmethod
    def run(expected: Expected, command: Callable[[], T]) -> T | None:
        """Refused with one of `expected`, or (when empty) done without a refusal."""
        if expected:
            with pytest.raises(err.MembershipError) as info:
                command()
            names = sorted(e.__name__ for e in expected)
            assert isinstance(info.value, tuple(expected)), (
                f"expected one of {names}, got {type(info.value).__name__}: {info.value}"
            )
            return None
        try:
            return command()
        except err.MembershipError as e:
            raise AssertionError(f"the model expected success, got {type(e).__name__}: {e}") from e

    # -- a head start -------------------------------------------------------
    @initialize(
        templates=st.lists(st.sampled_from(sorted(set(TEMPLATES) - {"bogus"})), max_size=2),
        joiners=st.lists(
            st.tuples(
                st.sampled_from(USER_NAMES[1:]), st.sampled_from(["admin", "developer", "viewer", "custom0", "custom1"])
            ),
            max_size=4,
            unique_by=lambda joiner: joiner[0],
        ),
        link_role=st.sampled_from([None, "viewer", "custom0", "custom1"]),
        deputy=st.sampled_from([None, "members", "members+roles", "developer+members", "all-but-billing"]),
        pending=st.lists(st.tuples(st.sampled_from(INVITE_EMAILS[:-1]), st.sampled_from([1, 7])), max_size=2),
    )
    def head_start(
        self,
        templates: list[str],
        joiners: list[tuple[str, str]],
        link_role: str | None,
        deputy: str | None,
        pending: list[tuple[str, int]],
    ) -> None:
        """The Owner creates a few roles, invites a few users, who accept, leaves a few invitations
        pending, and perhaps shares a link.

        The same rule methods as later steps, so that more happens sooner. A "deputy" is a member given a
        custom role that manages members (or roles) without holding every permission: escalation attempts.
        """
        for i, template in enumerate(templates):
            self.create_role("owner", f"Team {i}", template)
        if deputy is not None:
            self.create_role("owner", "Deputy", deputy)
            joiners = [*joiners, (next(u for u in USER_NAMES[1:] if u not in dict(joiners)), "deputy")]
        for user, role in joiners:
            issued = len(self.tokens)
            self.invite("owner", USERS[user].email, role, 7)
            if len(self.tokens) > issued:
                invitation_id, token = self.tokens[-1]
                self._accept(user, invitation_id, token)
        for email, days in pending:
            self.invite("owner", email, "viewer", days)
        if link_role is not None:
            self.create_link("owner", link_role, 0, 30)

    # -- time ----------------------------------------------------------------
    @rule(step=st.sampled_from(STEPS))
    def advance_time(self, step: timedelta) -> None:
        self.now += step

    @rule(ix=indexes, offset=st.sampled_from([timedelta(0), -timedelta(seconds=1)]))
    def advance_time_to_an_expiry(self, ix: int, offset: timedelta) -> None:
        """Right onto (or just before) a future expiry of an invitation or link: the boundary."""
        items = [*self.invitations.values(), *self.links.values()]
        future = sorted({item["expires_at"] + offset for item in items if item["expires_at"] + offset > self.now})
        if future:
            self.now = future[ix % len(future)]

    # -- invitations ---------------------------------------------------------
    @rule(
        actor=actors,
        email=st.sampled_from(INVITE_EMAILS),
        role=st.sampled_from(ROLE_REFS),
        days=st.sampled_from(INVITATION_DAYS),
    )
    def invite(self, actor: str, email: str, role: str, days: int) -> None:
        actor = self.who(actor)
        role_id = self.role_id_of(role)
        expected = self.gate(actor, "manage:members")
        replaced = None
        if not expected:
            if not looks_like_email(email):
                expected.add(err.InvalidValueError)
            if not 1 <= days <= 30:
                expected.add(err.InvalidValueError)
            expected |= self.can_assign(actor, str(role_id))
            if looks_like_email(email):
                address = normalized(email)
                if any(m["email"] == address for m in self.members.values()):
                    expected.add(err.AlreadyMemberError)
                replaced = self.open_invitation_for(address)
                if replaced is not None and not self.is_expired(self.invitations[replaced]):
                    expected.add(err.AlreadyInvitedError)
                still_open = sum(self.is_open(inv) for inv in self.invitations.values()) - (replaced is not None)
                if still_open >= MAX_PENDING:
                    expected.add(err.TooManyPendingInvitationsError)
        receipt = self.run(
            expected, lambda: self.app.invite_member(self.org_id, USERS[actor], email, role_id, expires_in_days=days)
        )
        if receipt is None:
            return
        assert receipt.id is not None and receipt.secret is not None and receipt.position is not None
        assert receipt.secret == self.app.invitation_token(self.org_id, receipt.id)
        self.forget_closed_invitations()
        if replaced is not None:
            self.invitations[replaced]["status"] = "replaced"
        self.invitations[str(receipt.id)] = {
            "email": normalized(email),
            "role": str(role_id),
            "expires_at": self.now + timedelta(days=days),
            "days": days,
            "status": "pending",
            "token": receipt.secret,
        }
        self.tokens.append((str(receipt.id), receipt.secret))

    @rule(actor=actors, ix=st.integers(min_value=-1, max_value=7), days=st.sampled_from([None, *INVITATION_DAYS]))
    def resend(self, actor: str, ix: int, days: int | None) -> None:
        actor = self.who(actor)
        invitation_id = self.invitation_id_at(ix)
        invitation = self.invitations.get(str(invitation_id))
        expected = self.open_invitation_refusals(actor, invitation)
        checked = invitation is not None and not self.gate(actor, "manage:members")  # the days are checked too
        if checked and days is not None and not 1 <= days <= 30:
            expected.add(err.InvalidValueError)
        receipt = self.run(
            expected, lambda: self.app.resend_invitation(self.org_id, USERS[actor], invitation_id, expires_in_days=days)
        )
        if receipt is None:
            return
        assert invitation is not None and receipt.secret is not None and receipt.position is not None
        old_token, invitation["token"] = invitation["token"], receipt.secret
        assert receipt.secret != old_token
        invitee = next((u for u in USER_NAMES if normalized(USERS[u].email) == invitation["email"]), "bob")
        self.run({err.InvitationReplacedError}, lambda: self.app.accept_invitation(USERS[invitee], old_token))
        invitation["expires_at"] = self.now + timedelta(days=invitation["days"] if days is None else days)
        self.tokens.append((str(invitation_id), receipt.secret))

    @rule(actor=actors, ix=st.integers(min_value=-1, max_value=7))
    def cancel(self, actor: str, ix: int) -> None:
        actor = self.who(actor)
        invitation_id = self.invitation_id_at(ix)
        invitation = self.invitations.get(str(invitation_id))
        expected = self.open_invitation_refusals(actor, invitation)
        if self.run(expected, lambda: self.app.cancel_invitation(self.org_id, USERS[actor], invitation_id)):
            assert invitation is not None
            invitation["status"] = "cancelled"

    def _accept(self, user: str, invitation_id: str, token: str) -> None:
        if invitation_id in self.forgotten:
            self.run({err.InvalidInvitationTokenError}, lambda: self.app.accept_invitation(USERS[user], token))
            return
        invitation = self.invitations[invitation_id]
        expected: Expected = set()
        if token != invitation["token"]:
            expected = {err.InvitationReplacedError}  # replaced by a resend (however many resends ago)
        else:
            status = invitation["status"]
            if status == "accepted":
                expected.add(err.InvitationAlreadyAcceptedError)
            elif status == "cancelled":
                expected.add(err.InvitationCancelledError)
            elif status == "replaced" or self.is_expired(invitation):
                expected.add(err.InvitationExpiredError)
            if normalized(USERS[user].email) != invitation["email"]:
                expected.add(err.InvitationEmailMismatchError)
            if user in self.members or any(m["email"] == invitation["email"] for m in self.members.values()):
                expected.add(err.AlreadyMemberError)
        receipt = self.run(expected, lambda: self.app.accept_invitation(USERS[user], token))
        if receipt is None:
            return
        assert receipt.position is not None
        invitation["status"] = "accepted"
        self.join(user, receipt.id, invitation["role"])

    @precondition(lambda self: self.tokens)
    @rule(ix=indexes, user=st.sampled_from(["the invitee", *JOINER_REFS]))
    def accept(self, ix: int, user: str) -> None:
        """The invitee with the current token (an outsider's invitation: someone else), or anyone with any
        token ever issued (current or replaced by a resend); mostly for invitations that are still open."""
        if user == "the invitee" and self.invitations:
            invitation_id = str(self.invitation_id_at(ix))
            token = self.invitations[invitation_id]["token"]
            email = self.invitations[invitation_id]["email"]
            user = next((u for u in USER_NAMES if normalized(USERS[u].email) == email), "bob")
            note(f"the invitee is {user}")
        else:
            user = self.who(user)
            tokens = [t for t in self.tokens if t[0] in self.invitations and self.is_open(self.invitations[t[0]])]
            tokens = tokens if tokens and ix < 6 else self.tokens
            invitation_id, token = tokens[ix % len(tokens)]
        self._accept(user, invitation_id, token)

    # -- forged and misused secrets -----------------------------------------
    @rule(
        user=users,
        ix=indexes,
        how=st.sampled_from(["tampered", "other kind", "garbage"]),
        kind=st.sampled_from(["invitation token", "link code"]),
    )
    def use_a_bad_secret(self, user: str, ix: int, how: str, kind: str) -> None:
        """A forged token, or a link code offered as an invitation token (or the reverse), is simply invalid."""
        tokens = [token for _, token in self.tokens]
        codes = [link["code"] for link in self.links.values()]
        own, other = (tokens, codes) if kind == "invitation token" else (codes, tokens)
        if how == "tampered" and own:
            secret = tampered(own[ix % len(own)], ix)
        elif how == "other kind" and other:
            secret = other[ix % len(other)]
        else:
            secret = "not-a-secret"
        if kind == "invitation token":
            self.run({err.InvalidInvitationTokenError}, lambda: self.app.accept_invitation(USERS[user], secret))
        else:
            self.run({err.InvalidInviteLinkCodeError}, lambda: self.app.accept_invite_link(USERS[user], secret))

    # -- invite links --------------------------------------------------------
    @rule(
        actor=actors,
        role=st.sampled_from(ROLE_REFS),
        max_uses=st.sampled_from(LINK_MAX_USES),
        days=st.sampled_from(LINK_DAYS),
    )
    def create_link(self, actor: str, role: str, max_uses: int, days: int) -> None:
        actor = self.who(actor)
        role_id = self.role_id_of(role)
        expected = self.gate(actor, "manage:members")
        if not expected:
            if max_uses < 0:
                expected.add(err.InvalidValueError)
            if not 1 <= days <= 365:
                expected.add(err.InvalidValueError)
            expected |= self.can_assign(actor, str(role_id))
        receipt = self.run(
            expected,
            lambda: self.app.create_invite_link(self.org_id, USERS[actor], role_id, max_uses, expires_in_days=days),
        )
        if receipt is None:
            return
        assert receipt.id is not None and receipt.secret is not None
        assert receipt.secret == self.app.invite_link_code(self.org_id, receipt.id)
        self.links[str(receipt.id)] = {
            "role": str(role_id),
            "max_uses": max_uses,
            "use_count": 0,
            "expires_at": self.now + timedelta(days=days),
            "deleted": False,
            "redeemed_by": set(),
            "code": receipt.secret,
        }

    @precondition(lambda self: self.links)
    @rule(ix=indexes, user=joiners)
    def redeem_link(self, ix: int, user: str) -> None:
        user = self.who(user)
        link = self.links[str(self.link_id_at(ix))]
        email = normalized(USERS[user].email)
        expected: Expected = set()
        if link["deleted"]:
            expected.add(err.InviteLinkDeletedError)
        if self.is_expired(link):
            expected.add(err.InviteLinkExpiredError)
        if user in self.members or any(m["email"] == email for m in self.members.values()):
            expected.add(err.AlreadyMemberError)
        if user in link["redeemed_by"]:
            expected.add(err.InviteLinkAlreadyUsedError)
        if link["max_uses"] and link["use_count"] >= link["max_uses"]:
            expected.add(err.InviteLinkUsedUpError)
        receipt = self.run(expected, lambda: self.app.accept_invite_link(USERS[user], link["code"]))
        if receipt is None:
            return
        link["use_count"] += 1
        link["redeemed_by"].add(user)
        pending = self.open_invitation_for(email)
        if pending is not None:
            self.invitations[pending]["status"] = "cancelled"
        self.join(user, receipt.id, link["role"])

    @rule(actor=actors, ix=st.integers(min_value=-1, max_value=7))
    def delete_link(self, actor: str, ix: int) -> None:
        actor = self.who(actor)
        link_id = self.link_id_at(ix)
        link = self.links.get(str(link_id))
        expected = self.gate(actor, "manage:members")
        if not expected:
            if link is None or link["deleted"]:
                expected.add(err.InviteLinkNotFoundError)
            else:
                expected |= self.can_assign(actor, link["role"])
        if self.run(expected, lambda: self.app.delete_invite_link(self.org_id, USERS[actor], link_id)):
            assert link is not None
            link["deleted"] = True

    # -- members -------------------------------------------------------------
    @rule(actor=actors, member=actors, role=st.sampled_from(ROLE_REFS))
    def change_role(self, actor: str, member: str, role: str) -> None:
        actor, member = self.who(actor), self.who(member)
        member_id, role_id = self.member_id_of(member), self.role_id_of(role)
        expected = self.gate(actor, "manage:members")
        if not expected:
            if member not in self.members:
                expected.add(err.MemberNotFoundError)
            else:
                if member == self.owner:
                    expected.add(err.OwnerRoleCannotChangeError)
                expected |= self.can_manage(actor, member)
            expected |= self.can_assign(actor, str(role_id))
        receipt = self.run(expected, lambda: self.app.change_role(self.org_id, USERS[actor], member_id, role_id))
        if receipt is None:
            return
        if self.members[member]["role"] == str(role_id):
            assert receipt.position is None, "a change to the same role records nothing"
        else:
            assert receipt.position is not None
            self.members[member]["role"] = str(role_id)

    @rule(actor=actors, member=actors)
    def remove(self, actor: str, member: str) -> None:
        actor, member = self.who(actor), self.who(member)
        member_id = self.member_id_of(member)
        expected = self.gate(actor, "manage:members")
        if not expected:
            if member not in self.members:
                expected.add(err.MemberNotFoundError)
            else:
                if member == self.owner:
                    expected.add(err.OwnerCannotBeRemovedError)
                if member == actor:
                    expected.add(err.CannotRemoveYourselfError)
                expected |= self.can_manage(actor, member)
        if self.run(expected, lambda: self.app.remove_member(self.org_id, USERS[actor], member_id)):
            self.drop(member)

    @rule(actor=actors)
    def leave(self, actor: str) -> None:
        actor = self.who(actor)
        expected: Expected = set()
        if actor not in self.members:
            expected.add(err.NotAMemberError)
        elif actor == self.owner:
            expected.add(err.OwnerCannotLeaveError)
        if self.run(expected, lambda: self.app.leave(self.org_id, USERS[actor])):
            self.drop(actor)

    @rule(actor=actors, name=st.sampled_from(ORGANIZATION_NAMES))
    def rename(self, actor: str, name: str) -> None:
        actor = self.who(actor)
        expected = self.gate(actor, "manage:settings")
        folded = " ".join(name.split())
        if not expected and not (folded and len(folded) <= 200 and name.isprintable()):
            expected.add(err.InvalidValueError)
        receipt = self.run(expected, lambda: self.app.rename_organization(self.org_id, USERS[actor], name))
        if receipt is None:
            return
        assert (receipt.position is None) == (folded == self.name), "renaming to the same name records nothing"
        self.name = folded

    @rule(actor=actors, member=actors)
    def transfer_ownership(self, actor: str, member: str) -> None:
        actor, member = self.who(actor), self.who(member)
        member_id = self.member_id_of(member)
        expected: Expected = set()
        if actor not in self.members:
            expected = {err.NotAMemberError}
        elif actor != self.owner:
            expected = {err.OwnerOnlyError}
        elif member not in self.members:
            expected = {err.MemberNotFoundError}
        elif member == self.owner:
            expected = {err.AlreadyOwnerError}
        if self.run(expected, lambda: self.app.transfer_ownership(self.org_id, USERS[actor], member_id)):
            self.members[self.owner]["role"] = self.system_roles["admin"]
            self.members[member]["role"] = self.system_roles["owner"]
            self.owner = member

    # -- custom roles --------------------------------------------------------
    def check_permissions(self, actor: str, template: str) -> Expected:
        requested = TEMPLATES[template]
        if not set(requested) <= EVERY_PERMISSION:
            return {err.InvalidValueError}
        if actor != self.owner and not closed(requested) <= self.permissions(actor):
            return {err.PrivilegeEscalationError}
        return set()

    @rule(actor=actors, name=st.sampled_from(ROLE_NAMES), template=st.sampled_from(sorted(TEMPLATES)))
    def create_role(self, actor: str, name: str, template: str) -> None:
        actor = self.who(actor)
        expected = self.gate(actor, "manage:roles")
        if not expected:
            if not role_name(name):
                expected.add(err.InvalidValueError)
            elif self.name_taken(role_name(name)):
                expected.add(err.RoleNameTakenError)
            expected |= self.check_permissions(actor, template)
        receipt = self.run(
            expected,
            lambda: self.app.create_role(
                self.org_id, USERS[actor], name, "made by the state machine", TEMPLATES[template]
            ),
        )
        if receipt is None:
            return
        assert receipt.id is not None
        role_id = str(receipt.id)
        self.roles[role_id] = {"name": role_name(name), "permissions": closed(TEMPLATES[template]), "system": False}
        self.custom_roles_ever.append(role_id)

    @rule(
        actor=actors,
        role=st.sampled_from(ROLE_REFS),
        name=st.sampled_from([None, *ROLE_NAMES]),
        template=st.sampled_from([None, *sorted(TEMPLATES)]),
    )
    def update_role(self, actor: str, role: str, name: str | None, template: str | None) -> None:
        actor = self.who(actor)
        role_id = self.role_id_of(role)
        current = self.roles.get(str(role_id))
        expected = self.gate(actor, "manage:roles")
        if not expected:
            expected |= self.custom_role_refusals(actor, current)
            if current is not None and not current["system"]:
                if name is not None and not role_name(name):
                    expected.add(err.InvalidValueError)
                elif name is not None and self.name_taken(role_name(name), renaming=str(role_id)):
                    expected.add(err.RoleNameTakenError)
                if template is not None:
                    expected |= self.check_permissions(actor, template)
        permissions = None if template is None else TEMPLATES[template]
        receipt = self.run(
            expected,
            lambda: self.app.update_role(self.org_id, USERS[actor], role_id, name=name, permissions=permissions),
        )
        if receipt is None:
            return
        assert current is not None
        new_name = current["name"] if name is None else role_name(name)
        new_permissions = current["permissions"] if permissions is None else closed(permissions)
        if (new_name, new_permissions) == (current["name"], current["permissions"]):
            assert receipt.position is None, "an update that changes nothing records nothing"
        else:
            assert receipt.position is not None
            current.update(name=new_name, permissions=new_permissions)

    def custom_role_refusals(self, actor: str, current: dict[str, Any] | None) -> Expected:
        """What refuses editing or deleting a role, before what each command checks on its own."""
        if current is None:
            return {err.RoleNotFoundError}
        if current["system"]:
            return {err.SystemRoleImmutableError}
        if actor != self.owner and not current["permissions"] <= self.permissions(actor):
            return {err.PrivilegeEscalationError}
        return set()

    @rule(actor=actors, role=st.sampled_from(ROLE_REFS))
    def delete_role(self, actor: str, role: str) -> None:
        actor = self.who(actor)
        role_id = self.role_id_of(role)
        current = self.roles.get(str(role_id))
        expected = self.gate(actor, "manage:roles")
        if not expected:
            expected |= self.custom_role_refusals(actor, current)
            if current is not None and not current["system"] and self.role_in_use(str(role_id)):
                expected.add(err.RoleInUseError)
        if self.run(expected, lambda: self.app.delete_role(self.org_id, USERS[actor], role_id)):
            del self.roles[str(role_id)]

    # -- invariants, after every step ----------------------------------------
    @invariant()
    def exactly_one_owner_who_is_a_member(self) -> None:
        with self.app.reading(self.org_id) as org:  # shared and read-only: no copy
            owner_role = self.system_roles["owner"]
            owners = [member_id for member_id, m in org.members.items() if str(m.role_id) == owner_role]
            assert len(owners) == 1, f"owners: {owners}"
            assert org.owner_member_id == owners[0]
            assert org.owner.user_id == self.owner

    @invariant()
    def the_name_matches_the_model(self) -> None:
        with self.app.reading(self.org_id) as org:  # shared and read-only: no copy
            assert org.name == self.name

    @invariant()
    def members_match_the_model(self) -> None:
        with self.app.reading(self.org_id) as org:  # shared and read-only: no copy
            actual = {m.user_id: (member_id, str(m.role_id), m.email) for member_id, m in org.members.items()}
            modelled = {user: (m["member_id"], m["role"], m["email"]) for user, m in self.members.items()}
            assert actual == modelled

    @invariant()
    def nobody_is_both_member_and_pending_invitee(self) -> None:
        with self.app.reading(self.org_id) as org:  # shared and read-only: no copy
            member_emails = {m.email for m in org.members.values()}
            pending = {inv.email for inv in org.invitations.values() if inv.status == "pending"}
            assert not member_emails & pending, f"members with an open invitation: {member_emails & pending}"

    @invariant()
    def links_are_never_over_used(self) -> None:
        with self.app.reading(self.org_id) as org:  # shared and read-only: no copy
            for link_id, link in org.links.items():
                assert not link.max_uses or link.use_count <= link.max_uses, f"link {link_id}: {link}"

    @invariant()
    def no_member_holds_a_deleted_role(self) -> None:
        with self.app.reading(self.org_id) as org:  # shared and read-only: no copy
            for member_id, member in org.members.items():
                assert str(member.role_id) in org.roles, f"member {member_id} holds deleted role {member.role_id}"

    @invariant()
    def invitations_links_and_roles_match_the_model(self) -> None:
        with self.app.reading(self.org_id) as org:  # shared and read-only: no copy
            status = {"replaced": "expired"}
            assert {
                i: (inv.email, str(inv.role_id), inv.status, inv.expires_at) for i, inv in org.invitations.items()
            } == {
                i: (inv["email"], inv["role"], status.get(inv["status"], inv["status"]), inv["expires_at"])
                for i, inv in self.invitations.items()
            }
            assert {
                i: (
                    str(link.role_id),
                    link.max_uses,
                    link.use_count,
                    link.expires_at,
                    link.deleted,
                    set(org.redemptions.get(i, ())),
                )
                for i, link in org.links.items()
            } == {
                i: (
                    link["role"],
                    link["max_uses"],
                    link["use_count"],
                    link["expires_at"],
                    link["deleted"],
                    link["redeemed_by"],
                )
                for i, link in self.links.items()
            }
            assert {i: (r.name, r.permissions, r.system) for i, r in org.roles.items()} == {
                i: (r["name"], r["permissions"], r["system"]) for i, r in self.roles.items()
            }

    @invariant()
    def the_aggregate_indexes_agree_with_its_records(self) -> None:
        with self.app.reading(self.org_id) as org:  # shared and read-only: no copy
            assert all(
                str(record.id) == key
                for records in (org.members, org.invitations, org.links, org.roles)
                for key, record in records.items()
            )
            assert org.member_by_user == {m.user_id: member_id for member_id, m in org.members.items()}
            assert org.member_by_email == {m.email: member_id for member_id, m in org.members.items()}
            counts: dict[str, int] = {}
            for m in org.members.values():
                counts[str(m.role_id)] = counts.get(str(m.role_id), 0) + 1
            assert org.role_member_counts == counts
            assert org.pending_by_email == {
                inv.email: i for i, inv in org.invitations.items() if inv.status == "pending"
            }
            # Who used a link is kept while it can be used: not once deleted, nor long after it expired.
            assert set(org.redemptions) <= set(org.links)
            assert all(len(users) == org.links[i].use_count for i, users in org.redemptions.items())
            assert all(i in org.redemptions for i, link in org.links.items() if link.expires_at > self.now and not link.deleted)

    def replaying_the_stored_events_rebuilds_an_equal_aggregate(self) -> None:
        """From the event store, not the cache; and a snapshot (its records transcoded) restores it too.

        Checked once at the end of each run (teardown), not after every step: a replay reads every event so
        far, and after each step it took 60 % of this test's time for no more events covered."""
        events = list(self.app.events.get(self.org_id))
        replayed = project_organization(None, events)
        current = self.app.get_organization(self.org_id)
        assert replayed is not None
        assert replayed.version == len(events) == current.version
        assert replayed == current
        for snapshot_class in (current.Snapshot, Snapshot):  # ours (members as columns), and the library's as of old
            stored = self.app.mapper.to_stored_event(snapshot_class.take(current))  # none taken: the interval is huge
            assert project_organization(None, [self.app.mapper.to_domain_event(stored)]) == current


OrganizationMachine.TestCase.settings = settings(
    # 120 runs of 50 steps in the suite (about 10 s); MEMBERSHIP_STATEFUL_EXAMPLES=2000 searches deeper.
    max_examples=int(os.environ.get("MEMBERSHIP_STATEFUL_EXAMPLES", "120")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOrganizationStateMachine = OrganizationMachine.TestCase
TestOrganizationStateMachine.pytestmark = [pytest.mark.slow]  # type: ignore[attr-defined]
