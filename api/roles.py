"""`/api/roles`, `/api/permissions` and `/api/me`: what members may do."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask_smorest import Blueprint

from api.auth import current_caller, current_member
from api.context import services, settled
from api.schemas import (
    MeSchema,
    MessageSchema,
    PermissionListSchema,
    RoleCreateSchema,
    RoleListSchema,
    RoleSchema,
    RoleUpdateSchema,
)
from membership.permissions import all_permissions
from projections import queries

blp = Blueprint("roles", __name__, url_prefix="/api", description="Roles and permissions")


@blp.route("/roles", methods=["GET"])
@blp.response(200, RoleListSchema)
def list_roles() -> Any:
    """System roles, then custom roles, with member counts; any member may list them."""
    organization_id, _ = current_member()
    return {"roles": queries.list_roles(services().read_db, organization_id)}


@blp.route("/roles", methods=["POST"])
@blp.arguments(RoleCreateSchema)
@blp.response(201, RoleSchema)
def create_role(body: dict[str, Any]) -> Any:
    """A custom role (manage:roles); only with permissions you hold yourself."""
    organization_id, _ = current_member()
    receipt = settled(
        services().organizations.create_role(
            organization_id, current_caller().actor, body["name"], body["description"], body["permissionIds"]
        )
    )
    assert receipt.id is not None
    return queries.get_role(services().read_db, organization_id, receipt.id)


@blp.route("/roles/<uuid:role_id>", methods=["PUT"])
@blp.arguments(RoleUpdateSchema)
@blp.response(200, RoleSchema)
def update_role(body: dict[str, Any], role_id: UUID) -> Any:
    """Rename, describe or re-permission a custom role (manage:roles)."""
    organization_id, _ = current_member()
    settled(
        services().organizations.update_role(
            organization_id, current_caller().actor, role_id,
            body.get("name"), body.get("description"), body.get("permissionIds"),
        )
    )  # fmt: skip
    return queries.get_role(services().read_db, organization_id, role_id)


@blp.route("/roles/<uuid:role_id>", methods=["DELETE"])
@blp.response(200, MessageSchema)
def delete_role(role_id: UUID) -> Any:
    """Delete a custom role nobody holds (manage:roles)."""
    organization_id, _ = current_member()
    settled(services().organizations.delete_role(organization_id, current_caller().actor, role_id))
    return {"message": "The role was deleted."}


@blp.route("/permissions", methods=["GET"])
@blp.response(200, PermissionListSchema)
def list_permissions() -> Any:
    """Every permission a role can hold."""
    current_caller()
    return {"permissions": [{**vars(p), "id": p.id, "description": p.description} for p in all_permissions()]}


@blp.route("/me", methods=["GET"])
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
