"""`/api/members`: list, invite, change role, remove, leave, transfer ownership."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.auth import current_caller, current_member
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services, utc_now
from api.errors import ApiError
from api.problems import IN_ORGANIZATION, RATE_LIMITED, answers
from api.ratelimit import check_invitation_rate
from api.schemas import (
    InvitationSchema,
    InviteSchema,
    MemberChangedSchema,
    MemberListSchema,
    MembersQuerySchema,
    MessageSchema,
    RoleChangeSchema,
)
from membership import exceptions as err
from projections import invitations as invitations_reads
from projections import members as members_reads
from projections import roles as roles_reads

blp = Blueprint("members", __name__, url_prefix="/api", description="Members of the active organization")


@blp.route("/members", methods=["GET"])
@answers(IN_ORGANIZATION, err.RoleNotFoundError)
@blp.arguments(MembersQuerySchema, location="query")
@blp.response(200, MemberListSchema)
def list_members(args: dict[str, Any]) -> Any:
    """Members, oldest first; any member may list them."""
    organization_id, _ = current_member()
    try:
        return members_reads.list_members(
            services().read_db, organization_id, _role_filter(organization_id, args.get("role")), args.get("q"),
            args["limit"], args.get("cursor"),
        )  # fmt: skip
    except ValueError:
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.") from None


@blp.route("/members/invite", methods=["POST"])
@answers(
    IN_ORGANIZATION, RATE_LIMITED, err.MissingPermissionError, err.InvalidValueError, err.RoleNotFoundError,
    err.OwnerRoleNotAssignableError, err.PrivilegeEscalationError, err.AlreadyMemberError, err.AlreadyInvitedError,
    err.TooManyPendingInvitationsError, err.ConflictError,
)  # fmt: skip
@blp.arguments(InviteSchema)
@blp.response(201, InvitationSchema)
def invite_member(body: dict[str, Any]) -> Any:
    """Invite someone by e-mail with a role (manage:members)."""
    organization_id, _ = current_member()
    actor = current_caller().actor
    check_invitation_rate(actor.user_id)
    receipt = execute(
        lambda: services().organizations.invite_member(
            organization_id, actor, body["email"], body["roleId"], body["expiresInDays"]
        )
    )
    assert receipt.id is not None
    return invitations_reads.get_invitation(services().read_db, organization_id, receipt.id, utc_now())


@blp.route("/members/leave", methods=["POST"])
@answers(IN_ORGANIZATION, err.OwnerCannotLeaveError, err.ConflictError)
@blp.response(200, MessageSchema)
def leave() -> Any:
    """Leave the organization (the Owner must transfer ownership first)."""
    organization_id, _ = current_member()
    execute(lambda: services().organizations.leave(organization_id, current_caller().actor))
    return {"message": "You have left the organization."}


@blp.route("/members/<uuid:member_id>", methods=["DELETE"])
@answers(
    IN_ORGANIZATION, err.MissingPermissionError, err.MemberNotFoundError, err.OwnerCannotBeRemovedError,
    err.CannotRemoveYourselfError, err.PrivilegeEscalationError, err.ConflictError,
)  # fmt: skip
@blp.response(200, MessageSchema)
def remove_member(member_id: UUID) -> Any:
    """Remove a member (manage:members); not the Owner, not yourself."""
    organization_id, _ = current_member()
    execute(lambda: services().organizations.remove_member(organization_id, current_caller().actor, member_id))
    return {"message": "The member was removed."}


@blp.route("/members/<uuid:member_id>/role", methods=["PUT"])
@answers(
    IN_ORGANIZATION, err.MissingPermissionError, err.MemberNotFoundError, err.OwnerRoleCannotChangeError,
    err.PrivilegeEscalationError, err.RoleNotFoundError, err.OwnerRoleNotAssignableError, err.ConflictError,
)  # fmt: skip
@blp.arguments(RoleChangeSchema)
@blp.response(200, MemberChangedSchema)
def change_role(body: dict[str, Any], member_id: UUID) -> Any:
    """Change a member's role (manage:members); takes effect on their next request."""
    organization_id, _ = current_member()
    execute(
        lambda: services().organizations.change_role(organization_id, current_caller().actor, member_id, body["roleId"])
    )
    member = members_reads.get_member(services().read_db, organization_id, member_id)
    return {"message": "The member's role was changed.", "member": member}


@blp.route("/members/<uuid:member_id>/transfer-ownership", methods=["POST"])
@answers(IN_ORGANIZATION, err.OwnerOnlyError, err.MemberNotFoundError, err.AlreadyOwnerError, err.ConflictError)
@blp.response(200, MessageSchema)
def transfer_ownership(member_id: UUID) -> Any:
    """Make another member the Owner (Owner only); the old Owner becomes an Admin."""
    organization_id, _ = current_member()
    execute(lambda: services().organizations.transfer_ownership(organization_id, current_caller().actor, member_id))
    return {"message": "Ownership was transferred; you are now an Admin."}


def _role_filter(organization_id: UUID, role: str | None) -> str | None:
    """`?role=` takes a role id or a role name."""
    if not role:
        return None
    roles = roles_reads.list_roles(services().read_db, organization_id)
    match = next((r for r in roles if r.id == role or r.name.casefold() == role.casefold()), None)
    if match is None:
        raise ApiError(404, "role_not_found", f"No role {role!r} in this organization.")
    return match.id
