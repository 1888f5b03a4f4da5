"""`/invite/accept?token=…` and `/join/{code}`: what an invitation or invite link offers, and accepting it.

GET only shows (it never changes anything); accepting is a POST with the session's CSRF token. Whoever is
not signed in is offered to sign in and comes back here; someone signed in with another address is told
which address the invitation is for and offered to switch account.
"""

from __future__ import annotations

from uuid import UUID

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from membership import Receipt
from membership import exceptions as err
from membership.permissions import in_words
from membership.previews import InvitationPreview, InviteLinkPreview, Offer
from web import guesses, refusals
from web.commands import settled
from web.context import services, signed_in_user
from web.security import check_form, confine

bp = Blueprint("accept_pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")  # fmt: skip
bp.before_request(check_form)
bp.after_request(confine)
refusals.register(bp)
guesses.register(bp)



@bp.get("/invite/accept")
def invitation() -> ResponseReturnValue:
    token, viewer = request.args.get("token", ""), signed_in_user()
    with guesses.counted():
        preview = services().organizations.preview_invitation(token, viewer)
    _refuse_unless_open(preview)
    return render_template("invitation.html", preview=preview, token=token, viewer=viewer, **_offer(preview))


@bp.post("/invite/accept")
def accept_invitation() -> ResponseReturnValue:
    token, user = request.form.get("token", ""), signed_in_user()
    if user is None:
        return _sign_in_first(url_for("accept_pages.invitation", token=token))
    with guesses.counted():
        receipt = services().organizations.accept_invitation(user, token)
    return _joined(receipt)


@bp.get("/join/<code>")
def invite_link(code: str) -> ResponseReturnValue:
    viewer = signed_in_user()
    with guesses.counted():
        preview = services().organizations.preview_invite_link(code, viewer)
    _refuse_unless_open(preview)
    return render_template("invite_link.html", preview=preview, code=code, viewer=viewer, **_offer(preview))


@bp.post("/join/<code>")
def accept_invite_link(code: str) -> ResponseReturnValue:
    user = signed_in_user()
    if user is None:
        return _sign_in_first(url_for("accept_pages.invite_link", code=code))
    with guesses.counted():
        receipt = services().organizations.accept_invite_link(user, code)
    return _joined(receipt)


@bp.get("/joined/<uuid:organization_id>")
def joined(organization_id: UUID) -> ResponseReturnValue:
    """Where accepting lands (until the console's members page exists): for its members only."""
    user = signed_in_user()
    if user is None:
        return _sign_in_first(url_for("accept_pages.joined", organization_id=organization_id))
    with services().organizations.reading(organization_id) as org:
        member = org.member_for_user(user.user_id)
        if member is None:
            raise err.NotAMemberError("You are not a member of this organization.")
        name, role = org.name, org.role_of(member)
    return render_template("joined.html", name=name, role=role, allows=in_words(role.permissions))


def _refuse_unless_open(preview: Offer) -> None:
    """A closed invitation or link gets the page for the refusal that accepting it would meet."""
    name = preview.organization_name
    if isinstance(preview, InvitationPreview):
        closed: dict[str, type[err.MembershipError]] = {
            "accepted": err.InvitationAlreadyAcceptedError,
            "cancelled": err.InvitationCancelledError,
            "expired": err.InvitationExpiredError,
        }
        if preview.status in closed:
            raise closed[preview.status](f"The invitation to join {name} is {preview.status}.")
    elif isinstance(preview, InviteLinkPreview) and not preview.viewer_is_member:
        links: dict[str, type[err.MembershipError]] = {
            "deleted": err.InviteLinkDeletedError,
            "expired": err.InviteLinkExpiredError,
            "used_up": err.InviteLinkUsedUpError,
        }
        if preview.status in links:
            raise links[preview.status](f"The invite link to join {name} can no longer be used.")
        if preview.viewer_used_it:
            raise err.InviteLinkAlreadyUsedError(f"You have already joined {name} through this link.")


def _offer(preview: Offer) -> dict[str, object]:
    return {"allows": in_words(preview.role.permissions) if preview.role is not None else []}


def _sign_in_first(back_to: str) -> ResponseReturnValue:
    return redirect(url_for("signin.login", next=back_to), 303)


def _joined(receipt: Receipt) -> ResponseReturnValue:
    """Once the read models show the new member (so the API and the console list them at once), say so.
    The joining is saved whatever they do: if they lag, the page (read from the organization) says so anyway."""
    settled(receipt)
    return redirect(url_for("accept_pages.joined", organization_id=receipt.organization_id), 303)
