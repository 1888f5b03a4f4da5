"""Settings > Roles: every role with its member count; the system roles read-only with their permissions;
custom roles created, edited (a grid of view/manage per resource) and deleted after a confirmation.

What the page offers comes from the domain's rule (`membership.authorization.can_grant`, as
`Organization.check_custom_role` and `check_grantable` ask it); the domain refuses the rest in words.
A refused form comes back with what the person typed (a draft kept in the session for one page load).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flask import abort, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from membership import exceptions as err
from membership.authorization import can_grant, check_can_change_role, check_permission
from membership.inputs import MAX_DESCRIPTION_LENGTH, MAX_ROLE_NAME_LENGTH
from membership.permissions import ACTIONS, MANAGE_ROLES, RESOURCES, closure
from projections import roles as roles_reads
from projections.roles import RoleRecord
from web.console import Seat, back, console_blueprint, run, seat, seated
from web.context import services
from web.refusals import Refusal

bp = console_blueprint("roles_page", __name__, ("roles_page.roles", "Roles"))
DRAFT_KEY = "role_draft"  # a refused form's values, shown once on the form it came from
_ALL_BOXES = frozenset(f"{action}:{resource}" for resource in RESOURCES for action in ACTIONS)  # every box of the grid
SYSTEM_ROLE = Refusal(409, "System roles cannot be changed", "Create a custom role with the permissions you want.")


@dataclass(frozen=True)
class Draft:
    """What the form shows: the role's values, or what the person typed before a refusal."""

    name: str = ""
    description: str = ""
    permissions: frozenset[str] = frozenset()

    @property
    def shown_name(self) -> str:
        """The name as the domain stores it (whitespace folded)."""
        return " ".join(self.name.split())


def may_create(here: Seat) -> bool:
    return here.may(MANAGE_ROLES)


def may_change(here: Seat, role: RoleRecord) -> bool:
    """Edit or delete `role`: a custom role whose every permission the person may grant (the domain's rule)."""
    return (
        not role.is_system and here.may(MANAGE_ROLES) and can_grant(here.permissions, here.is_owner, role.permissions)
    )


def grantable(here: Seat) -> set[str]:
    """The grid's enabled boxes: each permission (with the view a manage brings) the person may put in a role."""
    return {
        f"{action}:{resource}"
        for resource in RESOURCES
        for action in ACTIONS
        if can_grant(here.permissions, here.is_owner, closure({f"{action}:{resource}"}))
    }


def allows(permissions: Collection[str]) -> list[str]:
    """What a role allows, in at most two lines (the words of `membership.permissions.in_words`, grouped):
    "Create, change and delete instances, projects and deployments", "View everything else"."""
    held = closure(permissions)
    managed = [resource for resource in RESOURCES if f"manage:{resource}" in held]
    viewed = [resource for resource in RESOURCES if f"view:{resource}" in held and resource not in managed]
    lines = []
    if managed:
        lines.append(f"Create, change and delete {_listed(managed)}")
    if viewed:
        rest = len(viewed) + len(managed) == len(RESOURCES)
        lines.append(f"View {'everything else' if managed and rest else _listed(viewed)}")
    return lines or ["Nothing"]


def _listed(resources: list[str]) -> str:
    if len(resources) == len(RESOURCES):
        return "everything"
    return resources[0] if len(resources) == 1 else f"{', '.join(resources[:-1])} and {resources[-1]}"


@bp.get("/settings/roles")
@seated
def roles() -> ResponseReturnValue:
    here = seat()
    session.pop(DRAFT_KEY, None)  # a refused form left for the list is not brought back later
    listed = roles_reads.list_roles(services().read_db, here.organization_id)
    return render_template(
        "console/roles.html", seat=here, roles=listed, may_create=may_create(here),
        changeable={role.id for role in listed if may_change(here, role)},
        allows={role.id: allows(role.permissions) for role in listed},
    )  # fmt: skip


@bp.get("/settings/roles/new")
@seated
def new_role() -> ResponseReturnValue:
    here = seat()
    check_permission(here.permissions, MANAGE_ROLES)
    return _form(here, None, _take_draft(None) or Draft())


@bp.post("/settings/roles")
@seated
def create() -> ResponseReturnValue:
    here = seat()
    draft = _posted()
    done = run(lambda: services().organizations.create_role(
        here.organization_id, here.user, draft.name, draft.description, sorted(draft.permissions)),
        f"The role {draft.shown_name} was created.")  # fmt: skip
    if done is None and may_create(here):
        _keep_draft(None, draft)
        return back("roles_page.new_role")
    return back("roles_page.roles")


@bp.get("/settings/roles/<uuid:role_id>/edit")
@seated
def edit(role_id: UUID) -> ResponseReturnValue:
    here = seat()
    role = _changeable(here, role_id)
    saved = Draft(role.name, role.description, frozenset(role.permissions))
    return _form(here, role, _take_draft(role_id) or saved)


@bp.post("/settings/roles/<uuid:role_id>")
@seated
def update(role_id: UUID) -> ResponseReturnValue:
    here = seat()
    draft = _posted()
    done = run(lambda: services().organizations.update_role(
        here.organization_id, here.user, role_id, draft.name, draft.description, sorted(draft.permissions)),
        f"The role {draft.shown_name} was saved.")  # fmt: skip
    role = roles_reads.get_role(services().read_db, here.organization_id, role_id)
    if done is None and role is not None and may_change(here, role):
        _keep_draft(role_id, draft)
        return back("roles_page.edit", role_id=role_id)
    return back("roles_page.roles")


@bp.get("/settings/roles/<uuid:role_id>/delete")
@seated
def confirm_deletion(role_id: UUID) -> ResponseReturnValue:
    here = seat()
    role = _changeable(here, role_id)
    held = role.member_count
    return render_template("console/roles_delete.html", seat=here, role=role, held=held,
                           action=url_for("roles_page.delete", role_id=role_id) if not held else None)  # fmt: skip


@bp.post("/settings/roles/<uuid:role_id>/delete")
@seated
def delete(role_id: UUID) -> ResponseReturnValue:
    here = seat()
    run(lambda: services().organizations.delete_role(here.organization_id, here.user, role_id), "The role was deleted.")
    return back("roles_page.roles")


@bp.errorhandler(err.SystemRoleImmutableError)
def _system_role(error: err.SystemRoleImmutableError) -> ResponseReturnValue:
    """Opening the form or confirmation of a system role (the page never links there)."""
    return render_template("refused.html", refusal=SYSTEM_ROLE, detail=error.message, code=error.code), 409


def _form(here: Seat, role: RoleRecord | None, draft: Draft) -> ResponseReturnValue:
    return render_template(
        "console/roles_form.html", seat=here, role=role, draft=draft, resources=RESOURCES, enabled=grantable(here),
        action=url_for("roles_page.update", role_id=role.id) if role else url_for("roles_page.create"),
        max_name=MAX_ROLE_NAME_LENGTH, max_description=MAX_DESCRIPTION_LENGTH,
    )  # fmt: skip


def _changeable(here: Seat, role_id: UUID) -> RoleRecord:
    """The role, if the person may edit or delete it; otherwise the domain's refusal, as a page."""
    role = roles_reads.get_role(services().read_db, here.organization_id, role_id)
    if role is None:
        abort(404)
    if role.is_system:
        raise err.SystemRoleImmutableError(f"The system role {role.name!r} cannot be changed or deleted.")
    check_permission(here.permissions, MANAGE_ROLES)
    check_can_change_role(here.permissions, here.is_owner, role.permissions)
    return role


def _posted() -> Draft:
    form = request.form
    return Draft(form.get("name", ""), form.get("description", ""), frozenset(form.getlist("permissions")))


def _keep_draft(role_id: UUID | None, draft: Draft) -> None:
    session[DRAFT_KEY] = {
        "role": str(role_id) if role_id else None,
        "name": draft.name[: MAX_ROLE_NAME_LENGTH * 2],  # bounded: the session cookie holds it
        "description": draft.description[: MAX_DESCRIPTION_LENGTH * 2],
        "permissions": sorted(draft.permissions & _ALL_BOXES),
    }


def _take_draft(role_id: UUID | None) -> Draft | None:
    kept: Any = session.pop(DRAFT_KEY, None)
    if not isinstance(kept, dict) or kept.get("role") != (str(role_id) if role_id else None):
        return None
    permissions: Collection[str] = kept.get("permissions") or ()
    return Draft(str(kept.get("name", "")), str(kept.get("description", "")), frozenset(map(str, permissions)))
