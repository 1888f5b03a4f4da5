"""`/api/roles`, `/api/permissions` and `/api/me`: what members may do."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.auth import Membership, current_caller, requires
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services
from api.errors import ApiError
from api.history import check_history_reader
from api.paging import checked_cursor
from api.problems import answers
from api.schemas import (
    MeSchema,
    MessageSchema,
    PermissionListSchema,
    RoleCreateSchema,
    RoleListSchema,
    RoleSchema,
    RolesQuerySchema,
    RoleUpdateSchema,
)
from membership import exceptions as err
from membership.permissions import all_permissions
from projections import access
from projections import roles as roles_reads
from projections.engine.reading import Page
from projections.roles import RoleRecord

blp = Blueprint("roles", __name__, url_prefix="/api", description="Roles and permissions")


def role_named(roles: list[RoleRecord], role: str | None) -> str | None:
    """The id of the role `role` names (its id, or its name in any case) among `roles`; None for no filter."""
    if not role:
        return None
    match = next((r for r in roles if r.id == role or r.name.casefold() == role.casefold()), None)
    if match is None:
        raise ApiError(404, "role_not_found", f"No role {role!r} in this organization.")
    return match.id


@blp.route("/roles", methods=["GET"])
@answers(err.MissingPermissionError)
@blp.arguments(RolesQuerySchema, location="query")
@blp.response(200, RoleListSchema)
@requires()
def list_roles(me: Membership, args: dict[str, Any]) -> Any:
    """System roles, then custom roles by creation, with member counts; any member may list them. As they
    were at `asOf` (view:members): their permissions and holders then, every role on one page."""
    if args.get("asOf"):
        check_history_reader(me)
        roles = access.roles_as_of(services().read_db, me.organization_id, args["asOf"])
        return Page(roles, len(roles), None)
    with checked_cursor():
        return roles_reads.role_page(services().read_db, me.organization_id, args["limit"], args.get("cursor"))


@blp.route("/roles", methods=["POST"])
@answers(
    err.MissingPermissionError, err.InvalidValueError, err.RoleNameTakenError, err.PrivilegeEscalationError,
    err.ConflictError,
)  # fmt: skip
@blp.arguments(RoleCreateSchema)
@blp.response(201, RoleSchema)
@requires()
def create_role(me: Membership, body: dict[str, Any]) -> Any:
    """A custom role (manage:roles); only with permissions you hold yourself."""
    receipt = execute(
        lambda: services().organizations.create_role(
            me.organization_id, me.actor, body["name"], body["description"], body["permissionIds"]
        )
    )
    assert receipt.id is not None
    return roles_reads.get_role(services().read_db, me.organization_id, receipt.id)


@blp.route("/roles/<uuid:role_id>", methods=["PUT"])
@answers(
    err.MissingPermissionError, err.RoleNotFoundError, err.SystemRoleImmutableError, err.PrivilegeEscalationError,
    err.InvalidValueError, err.RoleNameTakenError, err.ConflictError,
)  # fmt: skip
@blp.arguments(RoleUpdateSchema, required=False)
@blp.response(200, RoleSchema)
@requires()
def update_role(me: Membership, body: dict[str, Any], role_id: UUID) -> Any:
    """Rename, describe or re-permission a custom role (manage:roles)."""
    execute(
        lambda: services().organizations.update_role(
            me.organization_id, me.actor, role_id, body.get("name"), body.get("description"), body.get("permissionIds")
        )
    )
    return roles_reads.get_role(services().read_db, me.organization_id, role_id)


@blp.route("/roles/<uuid:role_id>", methods=["DELETE"])
@answers(
    err.MissingPermissionError, err.RoleNotFoundError, err.SystemRoleImmutableError, err.PrivilegeEscalationError,
    err.RoleInUseError, err.ConflictError,
)  # fmt: skip
@blp.response(200, MessageSchema)
@requires()
def delete_role(me: Membership, role_id: UUID) -> Any:
    """Delete a custom role nobody holds (manage:roles)."""
    execute(lambda: services().organizations.delete_role(me.organization_id, me.actor, role_id))
    return {"message": "The role was deleted."}


@blp.route("/permissions", methods=["GET"])
@answers()
@blp.response(200, PermissionListSchema)
def list_permissions() -> Any:
    """Every permission a role can hold."""
    current_caller()
    return {"permissions": [{**vars(p), "id": p.id, "description": p.description} for p in all_permissions()]}


@blp.route("/me", methods=["GET"])
@blp.response(200, MeSchema)
@requires()
def me(membership: Membership) -> Any:
    """The caller, their membership and permissions in the active organization (for other services)."""
    return {
        "userId": membership.actor.user_id,
        "email": membership.actor.email or membership.member.email,
        "organizationId": str(membership.organization_id),
        "member": membership.member,
        "role": membership.member.role,
        "permissions": list(membership.member.role.permissions),
    }
