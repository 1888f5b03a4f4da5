"""`/api/roles`, `/api/permissions` and `/api/me`: what members may do."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.auth import current_caller, current_member
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services
from api.paging import checked_cursor
from api.problems import IN_ORGANIZATION, answers
from api.schemas import (
    MeSchema,
    MessageSchema,
    PageQuerySchema,
    PermissionListSchema,
    RoleCreateSchema,
    RoleListSchema,
    RoleSchema,
    RoleUpdateSchema,
)
from membership import exceptions as err
from membership.permissions import all_permissions
from projections import roles as roles_reads

blp = Blueprint("roles", __name__, url_prefix="/api", description="Roles and permissions")


@blp.route("/roles", methods=["GET"])
@answers(IN_ORGANIZATION)
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, RoleListSchema)
def list_roles(args: dict[str, Any]) -> Any:
    """System roles, then custom roles by creation, with member counts; any member may list them."""
    organization_id, _ = current_member()
    with checked_cursor():
        return roles_reads.role_page(services().read_db, organization_id, args["limit"], args.get("cursor"))


@blp.route("/roles", methods=["POST"])
@answers(
    IN_ORGANIZATION, err.MissingPermissionError, err.InvalidValueError, err.RoleNameTakenError,
    err.PrivilegeEscalationError, err.ConflictError,
)  # fmt: skip
@blp.arguments(RoleCreateSchema)
@blp.response(201, RoleSchema)
def create_role(body: dict[str, Any]) -> Any:
    """A custom role (manage:roles); only with permissions you hold yourself."""
    organization_id, _ = current_member()
    receipt = execute(
        lambda: services().organizations.create_role(
            organization_id, current_caller().actor, body["name"], body["description"], body["permissionIds"]
        )
    )
    assert receipt.id is not None
    return roles_reads.get_role(services().read_db, organization_id, receipt.id)


@blp.route("/roles/<uuid:role_id>", methods=["PUT"])
@answers(
    IN_ORGANIZATION, err.MissingPermissionError, err.RoleNotFoundError, err.SystemRoleImmutableError,
    err.PrivilegeEscalationError, err.InvalidValueError, err.RoleNameTakenError, err.ConflictError,
)  # fmt: skip
@blp.arguments(RoleUpdateSchema, required=False)
@blp.response(200, RoleSchema)
def update_role(body: dict[str, Any], role_id: UUID) -> Any:
    """Rename, describe or re-permission a custom role (manage:roles)."""
    organization_id, _ = current_member()
    execute(
        lambda: services().organizations.update_role(
            organization_id, current_caller().actor, role_id,
            body.get("name"), body.get("description"), body.get("permissionIds"),
        )
    )  # fmt: skip
    return roles_reads.get_role(services().read_db, organization_id, role_id)


@blp.route("/roles/<uuid:role_id>", methods=["DELETE"])
@answers(
    IN_ORGANIZATION, err.MissingPermissionError, err.RoleNotFoundError, err.SystemRoleImmutableError,
    err.PrivilegeEscalationError, err.RoleInUseError, err.ConflictError,
)  # fmt: skip
@blp.response(200, MessageSchema)
def delete_role(role_id: UUID) -> Any:
    """Delete a custom role nobody holds (manage:roles)."""
    organization_id, _ = current_member()
    execute(lambda: services().organizations.delete_role(organization_id, current_caller().actor, role_id))
    return {"message": "The role was deleted."}


@blp.route("/permissions", methods=["GET"])
@answers()
@blp.response(200, PermissionListSchema)
def list_permissions() -> Any:
    """Every permission a role can hold."""
    current_caller()
    return {"permissions": [{**vars(p), "id": p.id, "description": p.description} for p in all_permissions()]}


@blp.route("/me", methods=["GET"])
@answers(IN_ORGANIZATION)
@blp.response(200, MeSchema)
def me() -> Any:
    """The caller, their membership and permissions in the active organization (for other services)."""
    organization_id, member = current_member()
    actor = current_caller().actor
    return {
        "userId": actor.user_id,
        "email": actor.email or member.email,
        "organizationId": str(organization_id),
        "member": member,
        "role": member.role,
        "permissions": list(member.role.permissions),
    }
