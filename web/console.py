"""The Settings > Members console: who is signed in, as a member of which organization, and what they may do.

Every console page is load -> call one application method -> render, like the API, and asks the same rule
(`membership.authorization`) what to show; the domain refuses anything the page would not have shown.
Commands follow Post/Redirect/Get: their outcome, or the domain's refusal in words, is flashed onto the
page they return to.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from membership import Actor, Receipt
from membership import exceptions as err
from membership.authorization import can_grant, can_manage
from membership.organization import system_role_id
from membership.permissions import OWNER
from projections import members as members_reads
from projections.members import MemberRecord, OrganizationRecord
from projections.roles import RoleRecord
from web.commands import settled
from web.context import services, signed_in_user
from web.refusals import register as register_refusals
from web.security import check_form, confine

ORGANIZATION_KEY = "organization"  # the session's active organization
# The console's sections: (endpoint, label); each console module adds its own; the menu shows them in this order.
SECTIONS: list[tuple[str, str]] = []
MENU_ORDER = ("members_page.members", "invitations_page.invite_form", "invitations_page.invitations",
              "invitations_page.links", "roles_page.roles", "bulk_page.jobs", "audit_page.audit_log", "history_page.access_review",
              "settings_page.organization")  # fmt: skip
P = ParamSpec("P")
R = TypeVar("R")


def console_blueprint(name: str, import_name: str, *sections: tuple[str, str]) -> Blueprint:
    """A blueprint of console pages (`sections`: its entries in the menu): forms checked for CSRF, headers
    confined, refusals as pages."""
    SECTIONS.extend(sections)
    bp = Blueprint(name, import_name, template_folder="templates")
    bp.before_request(check_form)
    bp.after_request(confine)
    register_refusals(bp)
    return bp


@dataclass(frozen=True)
class Seat:
    """The signed-in person as a member of the active organization."""

    user: Actor
    organization: OrganizationRecord
    member: MemberRecord
    organizations: list[OrganizationRecord]  # every one they belong to, for the switcher
    owner_role_id: str = ""  # the organization's Owner role (derived from its id: worked out once per request)

    def __post_init__(self) -> None:
        if not self.owner_role_id:  # a frozen dataclass: set once, here
            object.__setattr__(self, "owner_role_id", str(system_role_id(UUID(self.organization.id), OWNER.key)))

    @property
    def organization_id(self) -> UUID:
        return UUID(self.organization.id)

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset(self.member.role.permissions)

    @property
    def is_owner(self) -> bool:
        return self.member.role.id == self.owner_role_id

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    def may_manage(self, other: MemberRecord) -> bool:
        """Change the role of, or remove, `other` (the domain's rule; never oneself or the Owner)."""
        return (
            other.user_id != self.user.user_id
            and other.role.id != self.owner_role_id
            and self.may("manage:members")
            and can_manage(self.permissions, self.is_owner, other.role.permissions)
        )

    def may_grant(self, role: RoleRecord) -> bool:
        """Give `role` (in an invitation, a link or a role change): never the Owner role."""
        return role.id != self.owner_role_id and self.may("manage:members") and can_grant(self.permissions, self.is_owner, role.permissions)


def console_sections() -> list[tuple[str, str]]:
    """The menu (a Jinja global)."""
    shown = [(endpoint, label) for endpoint, label in SECTIONS if endpoint in current_app.view_functions]
    return sorted(shown, key=lambda section: MENU_ORDER.index(section[0]) if section[0] in MENU_ORDER else len(MENU_ORDER))


def invite_endpoint() -> str | None:
    """Where the Members page's "Invite Member" button leads, once the invitations pages exist (a Jinja global)."""
    return INVITE_FORM if INVITE_FORM in current_app.view_functions else None


INVITE_FORM = "invitations_page.invite_form"


def seat() -> Seat:
    """This request's Seat (`@seated` views only)."""
    found: Seat = g.seat
    return found


def seated(view: Callable[P, R]) -> Callable[P, R | ResponseReturnValue]:
    """The view runs for a signed-in member of an organization (the active one, or `?org=` which becomes it);
    others are sent to sign in, or to create their first organization."""

    @functools.wraps(view)
    def with_seat(*args: P.args, **kwargs: P.kwargs) -> R | ResponseReturnValue:
        user = signed_in_user()
        if user is None:
            return redirect(url_for("signin.login", next=request.full_path), 303)
        found = _find_seat(user)
        if found is None:
            return render_template("console/no_organization.html", user=user)
        g.seat = found
        return view(*args, **kwargs)

    return with_seat


def _find_seat(user: Actor) -> Seat | None:
    db = services().read_db
    organizations = members_reads.organizations_of(db, user.user_id, limit=200, counted=False).items
    wanted = request.args.get("org") or session.get(ORGANIZATION_KEY)
    chosen = next((o for o in organizations if o.id == wanted), organizations[0] if organizations else None)
    if chosen is None:
        return None
    member = members_reads.member_for_user(db, UUID(chosen.id), user.user_id)
    if member is None:  # left or removed between the two reads
        return None
    session[ORGANIZATION_KEY] = chosen.id
    return Seat(user, chosen, member, organizations)


def run(command: Callable[[], Receipt], done: str) -> Receipt | None:
    """Run one command for the page: its outcome flashed (`done`), or the domain's refusal in words. Waits
    until the read models show it (read-your-writes), as the API does; saved is saved even if they lag."""
    try:
        receipt = command()
    except err.MembershipError as error:
        flash(error.message, "error")
        return None
    if not settled(receipt):
        flash("Saved. The lists may take a moment to show it.", "note")
    flash(done, "done")
    return receipt


def back(endpoint: str, **values: Any) -> ResponseReturnValue:
    """Post/Redirect/Get: to the page the form was on."""
    return redirect(url_for(endpoint, **values), 303)
