"""Settings > Members: inviting by e-mail, the invitations (with their e-mail's delivery), and invite links.

Like the API (api/members.py, api/invitations.py): reading invitations and links needs manage:members, and
every command is the application's, refused by the domain for anyone the page would not have offered it to.
Invitations and resends take the API's per-user hourly slots (bucket "invitations"): one budget however the
person sends them. A new link's URL is shown once, on the page the creation leads to; its code never appears
in an address of the console.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from flask import abort, flash, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from membership import Receipt
from membership.inputs import DEFAULT_EXPIRES_IN_DAYS, INVITATION_DAYS, INVITE_LINK_DAYS, MAX_LINK_USES
from membership.organization import system_role_id
from membership.permissions import MANAGE_MEMBERS, VIEWER, in_words
from projections import invitations as invitations_reads
from projections import ratelimit_slots
from projections import roles as roles_reads
from projections.invitations import InvitationRecord, InviteLinkRecord
from projections.roles import RoleRecord
from web.console import back, console_blueprint, run, seat, seated
from web.context import services
from web.security import allow_own_scripts

bp = console_blueprint(
    "invitations_page",
    __name__,
    ("invitations_page.invitations", "Invitations"),
    ("invitations_page.links", "Invite links"),
)
PAGE_SIZE = 50
HOUR = timedelta(hours=1)
INVITATIONS_BUCKET = "invitations"  # the API's (api.ratelimit.INVITATIONS): the same slots
STATUSES = ("pending", "expired", "accepted", "cancelled", "all")
INVITE_DRAFT = "invite_draft"  # what the invite form held when the domain refused it (shown again once)
NEW_LINK = "new_invite_link"  # the link just created: its URL is shown once, then forgotten


# -- Invite Member -----------------------------------------------------------------------------------------------
@bp.get("/settings/invitations/new")
@seated
def invite_form() -> ResponseReturnValue:
    here = seat()
    if not here.may(MANAGE_MEMBERS):
        return _not_allowed("Invite Member")
    grantable = _grantable()
    draft = session.pop(INVITE_DRAFT, None) or {}
    default_role = _least_role(grantable)
    return render_template(
        "console/invite.html", seat=here, grantable=grantable, days=INVITATION_DAYS,
        email=draft.get("email", ""), role_id=draft.get("role_id", default_role),
        expires_in_days=draft.get("expires_in_days", str(DEFAULT_EXPIRES_IN_DAYS)),
    )  # fmt: skip


@bp.post("/settings/invitations/new")
@seated
def invite() -> ResponseReturnValue:
    here = seat()
    email = request.form.get("email", "")
    days_text = request.form.get("expires_in_days", "")
    draft = {"email": email[:320], "role_id": request.form.get("role_id", "")[:36], "expires_in_days": days_text[:4]}
    role_id = _uuid(request.form.get("role_id"))
    days = _whole_number(days_text, INVITATION_DAYS, "Expires in (days)")
    if days is None:
        return _invite_again(draft)
    receipt = _limited(lambda: services().organizations.invite_member(here.organization_id, here.user, email, role_id, days),
                       f"The invitation to {email.strip()} was sent.")  # fmt: skip
    if receipt is None:
        return _invite_again(draft)
    return back("invitations_page.invitations")


def _invite_again(draft: dict[str, str]) -> ResponseReturnValue:
    """Back to the form, holding what was typed; someone who may not invite goes back to the members."""
    if not seat().may(MANAGE_MEMBERS):
        return back("members_page.members")
    session[INVITE_DRAFT] = draft
    return back("invitations_page.invite_form")


# -- Invitations -------------------------------------------------------------------------------------------------
@bp.get("/settings/invitations")
@seated
def invitations() -> ResponseReturnValue:
    here = seat()
    if not here.may(MANAGE_MEMBERS):  # as GET /api/invitations: the list reveals who was invited
        return _not_allowed("Invitations")
    status = _status(request.args.get("status"))
    now = services().organizations.clock()
    try:
        page = invitations_reads.list_invitations(
            services().read_db, here.organization_id, now, status, PAGE_SIZE, request.args.get("cursor") or None
        )
    except ValueError:
        abort(400)
    return render_template("console/invitations.html", seat=here, page=page, status=status, statuses=STATUSES,
                           now=now, may_act=_may_act)  # fmt: skip


@bp.post("/settings/invitations/<uuid:invitation_id>/resend")
@seated
def resend(invitation_id: UUID) -> ResponseReturnValue:
    here = seat()
    _limited(lambda: services().organizations.resend_invitation(here.organization_id, here.user, invitation_id),
             "The invitation was sent again, with a new link; the link of the earlier e-mail no longer works.")  # fmt: skip
    return _back_to_invitations()


@bp.post("/settings/invitations/<uuid:invitation_id>/cancel")
@seated
def cancel(invitation_id: UUID) -> ResponseReturnValue:
    here = seat()
    run(lambda: services().organizations.cancel_invitation(here.organization_id, here.user, invitation_id),
        "The invitation was cancelled; its link no longer works.")  # fmt: skip
    return _back_to_invitations()


def _back_to_invitations() -> ResponseReturnValue:
    if not seat().may(MANAGE_MEMBERS):
        return back("members_page.members")
    return back("invitations_page.invitations", status=_status(request.form.get("status")))


def _may_act(invitation: InvitationRecord) -> bool:
    """Resend or cancel: a pending or expired invitation whose role the signed-in person may give."""
    return invitation.status in ("pending", "expired") and seat().may_grant(invitation.role)


# -- Invite links ------------------------------------------------------------------------------------------------
@bp.get("/settings/invite-links")
@seated
def links() -> ResponseReturnValue:
    here = seat()
    if not here.may(MANAGE_MEMBERS):  # as GET /api/invite-links
        return _not_allowed("Invite links")
    grantable = _grantable()
    try:
        page = invitations_reads.list_invite_links(
            services().read_db, here.organization_id, PAGE_SIZE, request.args.get("cursor") or None
        )
    except ValueError:
        abort(400)
    return render_template(
        "console/invite_links.html", seat=here, page=page, grantable=grantable, default_role=_least_role(grantable),
        now=services().organizations.clock(), days=INVITE_LINK_DAYS, max_uses=MAX_LINK_USES, link_state=_link_state,
    )  # fmt: skip


@bp.post("/settings/invite-links")
@seated
def create_link() -> ResponseReturnValue:
    here = seat()
    role_id = _uuid(request.form.get("role_id"))
    max_uses = _whole_number(request.form.get("max_uses", ""), range(0, MAX_LINK_USES + 1), "Max uses")
    days = _whole_number(request.form.get("expires_in_days", ""), INVITE_LINK_DAYS, "Expires in (days)")
    if max_uses is None or days is None:
        return back("invitations_page.links")
    receipt = run(lambda: services().organizations.create_invite_link(here.organization_id, here.user, role_id,
                                                                       max_uses, days),
                  "The invite link was created.")  # fmt: skip
    if receipt is None or receipt.id is None:
        return back("invitations_page.links" if here.may(MANAGE_MEMBERS) else "members_page.members")
    session[NEW_LINK] = {"organization": str(here.organization_id), "link": str(receipt.id)}
    return back("invitations_page.created_link")


@bp.get("/settings/invite-links/new")
@seated
def created_link() -> ResponseReturnValue:
    """The URL of the link just created, once: the session forgets which link it was as it is shown."""
    here = seat()
    shown = session.pop(NEW_LINK, None) or {}
    if shown.get("organization") != str(here.organization_id):
        return back("invitations_page.links")
    link_id = UUID(shown["link"])
    link = invitations_reads.get_invite_link(services().read_db, here.organization_id, link_id)
    code = services().organizations.invite_link_code(here.organization_id, link_id)
    allow_own_scripts()  # the Copy button (web/static/copy.js); the page works without it
    return render_template("console/invite_link_created.html", seat=here, link=link,
                           url=f"{services().settings.public_url}/join/{code}")  # fmt: skip


@bp.get("/settings/invite-links/<uuid:link_id>/delete")
@seated
def confirm_link_deletion(link_id: UUID) -> ResponseReturnValue:
    here = seat()
    if not here.may(MANAGE_MEMBERS):
        return _not_allowed("Invite links")
    link = invitations_reads.get_invite_link(services().read_db, here.organization_id, link_id)
    if link is None or link.deleted_at is not None:
        abort(404)
    return render_template("console/invite_link_delete.html", seat=here, link=link,
                           action=url_for("invitations_page.delete_link", link_id=link_id))  # fmt: skip


@bp.post("/settings/invite-links/<uuid:link_id>/delete")
@seated
def delete_link(link_id: UUID) -> ResponseReturnValue:
    here = seat()
    run(lambda: services().organizations.delete_invite_link(here.organization_id, here.user, link_id),
        "The invite link was deleted; nobody can join with it any more.")  # fmt: skip
    return back("invitations_page.links" if here.may(MANAGE_MEMBERS) else "members_page.members")


def _link_state(link: InviteLinkRecord, now: datetime) -> str:
    if link.deleted_at is not None:
        return "Deleted"
    if link.expires_at <= now:
        return "Expired"
    if link.max_uses and link.use_count >= link.max_uses:
        return "Used up"
    return "Active"


# -- shared ------------------------------------------------------------------------------------------------------
def _limited(command: Callable[[], Receipt], done: str) -> Receipt | None:
    """`run`, in one of the person's invitation slots (the API's): given back if the domain refuses."""
    here = seat()
    db, settings, now = services().read_db, services().settings, services().organizations.clock()
    try:
        slot = ratelimit_slots.reserve(db, INVITATIONS_BUCKET, here.user.user_id, settings.invites_per_hour, HOUR, now)
    except ratelimit_slots.LimitReachedError as full:
        minutes = max(1, math.ceil((full.retry_at - now).total_seconds() / 60))
        flash(f"You can send {settings.invites_per_hour} invitations in an hour (resends included); "
              f"try again in {minutes} minute{'' if minutes == 1 else 's'}.", "error")  # fmt: skip
        return None
    receipt = run(command, done)
    if receipt is None:
        ratelimit_slots.release(db, slot)
    return receipt


def _grantable() -> list[RoleRecord]:
    here = seat()
    return [role for role in roles_reads.list_roles(services().read_db, here.organization_id, counted=False) if here.may_grant(role)]


def _least_role(grantable: list[RoleRecord]) -> str | None:
    """What the forms offer first: the Viewer role if it may be given (the least a new member needs)."""
    viewer = str(system_role_id(seat().organization_id, VIEWER.key))
    return viewer if any(role.id == viewer for role in grantable) else (grantable[0].id if grantable else None)


def _not_allowed(section: str) -> ResponseReturnValue:
    here = seat()
    return render_template("console/not_allowed.html", seat=here, section=section,
                           needs=in_words([MANAGE_MEMBERS])), 403  # fmt: skip


def _status(text: str | None) -> str:
    return text if text in STATUSES else "pending"


def _whole_number(text: str, allowed: range, label: str) -> int | None:
    """The field's number, or None with the refusal in words (the API's ranges, the form's labels)."""
    try:
        number = int(text.strip())
    except ValueError:
        number = None
    if number is None or number not in allowed:
        flash(f"{label} must be a whole number from {allowed.start} to {allowed.stop - 1}.", "error")
        return None
    return number


def _uuid(text: str | None) -> UUID:
    try:
        return UUID(text or "")
    except ValueError:
        abort(400)
