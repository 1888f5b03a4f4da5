"""Settings > Members: the member list (search, role filter, paging), and per member only the actions the
signed-in person may take: change role, remove, transfer ownership; leaving; switching and creating
organizations."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from membership.permissions import in_words
from projections import members as members_reads
from projections import ratelimit_slots
from projections import roles as roles_reads
from web.console import ORGANIZATION_KEY, back, console_blueprint, run, seat, seated
from web.context import services, signed_in_user

bp = console_blueprint("members_page", __name__, ("members_page.members", "Members"))
PAGE_SIZE = 50
HOUR = timedelta(hours=1)


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("members_page.members"), 303)


@bp.get("/settings/members")
@seated
def members() -> ResponseReturnValue:
    here = seat()
    db = services().read_db
    roles = roles_reads.list_roles(db, here.organization_id, counted=False)
    role_filter = request.args.get("role") or None
    if role_filter and role_filter not in {role.id for role in roles}:
        role_filter = None
    query = (request.args.get("q") or "").strip()[:200]
    try:
        page = members_reads.list_members(
            db, here.organization_id, role_filter, query or None, PAGE_SIZE, request.args.get("cursor") or None
        )
    except ValueError:
        abort(400)
    return render_template(
        "console/members.html", seat=here, page=page, roles=roles, role_filter=role_filter, query=query,
        grantable=[role for role in roles if here.may_grant(role)],
        allows={role.id: in_words(role.permissions) for role in roles},
        member_paths=url_for("members_page.members"),  # + /{id}/role...: one url_for, not four a row
    )  # fmt: skip


@bp.post("/settings/members/<uuid:member_id>/role")
@seated
def change_role(member_id: UUID) -> ResponseReturnValue:
    here = seat()
    role_id = _uuid(request.form.get("role_id"))
    run(lambda: services().organizations.change_role(here.organization_id, here.user, member_id, role_id),
        "The member's role was changed.")  # fmt: skip
    return back("members_page.members")


@bp.get("/settings/members/<uuid:member_id>/remove")
@seated
def confirm_removal(member_id: UUID) -> ResponseReturnValue:
    member = _member(member_id)
    return render_template("console/confirm.html", seat=seat(), title=f"Remove {member.name or member.email}?",
                           consequences=[f"{member.email} loses access to {seat().organization.name} at once.",
                                         "They can join again only with a new invitation or invite link."],
                           action=url_for("members_page.remove", member_id=member_id), button="Remove member")  # fmt: skip


@bp.post("/settings/members/<uuid:member_id>/remove")
@seated
def remove(member_id: UUID) -> ResponseReturnValue:
    here = seat()
    run(lambda: services().organizations.remove_member(here.organization_id, here.user, member_id),
        "The member was removed.")  # fmt: skip
    return back("members_page.members")


@bp.get("/settings/members/<uuid:member_id>/transfer-ownership")
@seated
def confirm_transfer(member_id: UUID) -> ResponseReturnValue:
    member = _member(member_id)
    name = member.name or member.email
    return render_template("console/confirm.html", seat=seat(), title=f"Make {name} the Owner?",
                           consequences=[f"{name} becomes the Owner of {seat().organization.name}, with every right, "
                                         "including deleting it and transferring ownership again.",
                                         "You become an Admin; only the new Owner can make you Owner again."],
                           action=url_for("members_page.transfer", member_id=member_id),
                           button="Transfer ownership")  # fmt: skip


@bp.post("/settings/members/<uuid:member_id>/transfer-ownership")
@seated
def transfer(member_id: UUID) -> ResponseReturnValue:
    here = seat()
    run(lambda: services().organizations.transfer_ownership(here.organization_id, here.user, member_id),
        "Ownership was transferred; you are now an Admin.")  # fmt: skip
    return back("members_page.members")


@bp.get("/settings/leave")
@seated
def confirm_leaving() -> ResponseReturnValue:
    here = seat()
    if here.is_owner:
        return render_template("console/confirm.html", seat=here, title="Transfer ownership first",
                               consequences=["The Owner cannot leave: make another member the Owner, then leave."],
                               action=None, button=None)  # fmt: skip
    return render_template("console/confirm.html", seat=here, title=f"Leave {here.organization.name}?",
                           consequences=["You lose access at once; you can join again only if invited."],
                           action=url_for("members_page.leave"), button="Leave organization")  # fmt: skip


@bp.post("/settings/leave")
@seated
def leave() -> ResponseReturnValue:
    here = seat()
    if run(lambda: services().organizations.leave(here.organization_id, here.user), "You left the organization."):
        session.pop(ORGANIZATION_KEY, None)
    return back("members_page.members")


@bp.post("/settings/organizations")
def create_organization() -> ResponseReturnValue:
    """A new organization, whose creator is its Owner; it becomes the active one."""
    user = signed_in_user()
    if user is None:
        return redirect(url_for("signin.login", next=url_for("members_page.members")), 303)
    name = request.form.get("name", "")
    db, settings, now = services().read_db, services().settings, services().organizations.clock()
    try:  # the API's limit, in the same slots: one budget however the person creates them
        slot = ratelimit_slots.reserve(db, "organizations", user.user_id, settings.organizations_per_hour, HOUR, now)
    except ratelimit_slots.LimitReachedError:
        flash(f"You can create {settings.organizations_per_hour} organizations in an hour; try again later.", "error")
        return back("members_page.members")
    receipt = run(lambda: services().organizations.create_organization(user, name), "The organization was created.")
    if receipt is None:
        ratelimit_slots.release(db, slot)
    else:
        session[ORGANIZATION_KEY] = str(receipt.organization_id)
    return back("members_page.members")


def _member(member_id: UUID) -> members_reads.MemberRecord:
    member = members_reads.get_member(services().read_db, seat().organization_id, member_id)
    if member is None:
        abort(404)
    return member


def _uuid(text: str | None) -> UUID:
    try:
        return UUID(text or "")
    except ValueError:
        abort(400)
