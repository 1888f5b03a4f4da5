"""Settings > Organization: rename the organization (manage:settings), delete it (the Owner, who types its
name to confirm).

The domain decides who may do either (`Organization.rename`, `Organization.delete`); the page shows each
form only to those it would accept. Typing the name is the page's own safeguard against deleting the wrong
organization in a hurry, so the server checks it, not the browser.
"""

from __future__ import annotations

from flask import flash, render_template, request, session
from flask.typing import ResponseReturnValue

from membership.inputs import MAX_ORGANIZATION_NAME_LENGTH
from membership.permissions import MANAGE_SETTINGS
from web.console import ORGANIZATION_KEY, back, console_blueprint, run, seat, seated
from web.context import services

bp = console_blueprint("settings_page", __name__, ("settings_page.organization", "Organization"))
CONSEQUENCES = (
    "Every member loses access at once, you included.",
    "Pending invitations are cancelled and invite links stop working.",
    "Its history stays in the audit record; the organization cannot be restored.",
)


@bp.get("/settings/organization")
@seated
def organization() -> ResponseReturnValue:
    here = seat()
    return render_template(
        "console/organization.html", seat=here, may_rename=here.may(MANAGE_SETTINGS), may_delete=here.is_owner,
        consequences=CONSEQUENCES, max_length=MAX_ORGANIZATION_NAME_LENGTH,
    )  # fmt: skip


@bp.post("/settings/organization/name")
@seated
def rename() -> ResponseReturnValue:
    here = seat()
    name = request.form.get("name", "")
    run(lambda: services().organizations.rename_organization(here.organization_id, here.user, name),
        "The organization was renamed.")  # fmt: skip
    return back("settings_page.organization")


@bp.post("/settings/organization/delete")
@seated
def delete() -> ResponseReturnValue:
    here = seat()
    name = here.organization.name
    if " ".join(request.form.get("confirm_name", "").split()) != name:
        flash(f"Type the organization's name, {name}, exactly as shown to delete it.", "error")
        return back("settings_page.organization")
    if run(lambda: services().organizations.delete_organization(here.organization_id, here.user),
           f"The organization {name} was deleted."):  # fmt: skip
        session.pop(ORGANIZATION_KEY, None)
        return back("members_page.members")
    return back("settings_page.organization")
