"""`/api/members`: list, invite, change role, remove, leave, transfer ownership."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.auth import Membership, requires
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services, utc_now
from api.errors import ApiError
from api.history import check_history_reader
from api.paging import checked_cursor
from api.problems import RATE_LIMITED, answers
from api.ratelimit import check_invitation_rate
from api.roles import role_named
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
from projections import access
from projections import invitations as invitations_reads
from projections import members as members_reads
from projections import roles as roles_reads

blp = Blueprint("members", __name__, url_prefix="/api", description="Members of the active organization")


@blp.route("/members", methods=["GET"])
@answers(err.RoleNotFoundError, err.MissingPermissionError)
@blp.arguments(MembersQuerySchema, location="query")
@blp.response(200, MemberListSchema)
@requires()
def list_members(me: Membership, args: dict[str, Any]) -> Any:
    """Members, oldest first; any member may list them (as they were at `asOf`: view:members)."""
    organization_id = me.organization_id
    if args.get("asOf"):
        return _members_as_of(me, args)
    try:
        return members_reads.list_members(
            services().read_db, organization_id, _role_filter(organization_id, args.get("role")), args.get("q"),
            args["limit"], args.get("cursor"),
        )  # fmt: skip
    except ValueError:
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.") from None


@blp.route("/members/invite", methods=["POST"])
@answers(
    RATE_LIMITED, err.MissingPermissionError, err.InvalidValueError, err.RoleNotFoundError,
    err.OwnerRoleNotAssignableError, err.PrivilegeEscalationError, err.AlreadyMemberError, err.AlreadyInvitedError,
    err.TooManyPendingInvitationsError, err.ConflictError,
)  # fmt: skip
@blp.arguments(InviteSchema)
@blp.response(201, InvitationSchema)
@requires()
def invite_member(me: Membership, body: dict[str, Any]) -> Any:
    """Invite someone by e-mail with a role (manage:members)."""
    check_invitation_rate(me.actor.user_id)
    receipt = execute(
        lambda: services().organizations.invite_member(
            me.organization_id, me.actor, body["email"], body["roleId"], body["expiresInDays"]
        )
    )
    assert receipt.id is not None
    return invitations_reads.get_invitation(services().read_db, me.organization_id, receipt.id, utc_now())


@blp.route("/members/leave", methods=["POST"])
@answers(err.OwnerCannotLeaveError, err.ConflictError)
@blp.response(200, MessageSchema)
@requires()
def leave(me: Membership) -> Any:
    """Leave the organization (the Owner must transfer ownership first)."""
    execute(lambda: services().organizations.leave(me.organization_id, me.actor))
    return {"message": "You have left the organization."}


@blp.route("/members/<uuid:member_id>", methods=["DELETE"])
@answers(
    err.MissingPermissionError, err.MemberNotFoundError, err.OwnerCannotBeRemovedError,
    err.CannotRemoveYourselfError, err.PrivilegeEscalationError, err.ConflictError,
)  # fmt: skip
@blp.response(200, MessageSchema)
@requires()
def remove_member(me: Membership, member_id: UUID) -> Any:
    """Remove a member (manage:members); not the Owner, not yourself."""
    execute(lambda: services().organizations.remove_member(me.organization_id, me.actor, member_id))
    return {"message": "The member was removed."}


@blp.route("/members/<uuid:member_id>/role", methods=["PUT"])
@answers(
    err.MissingPermissionError, err.MemberNotFoundError, err.OwnerRoleCannotChangeError,
    err.PrivilegeEscalationError, err.RoleNotFoundError, err.OwnerRoleNotAssignableError, err.ConflictError,
)  # fmt: skip
@blp.arguments(RoleChangeSchema)
@blp.response(200, MemberChangedSchema)
@requires()
def change_role(me: Membership, body: dict[str, Any], member_id: UUID) -> Any:
    """Change a member's role (manage:members); takes effect on their next request."""
    execute(lambda: services().organizations.change_role(me.organization_id, me.actor, member_id, body["roleId"]))
    member = members_reads.get_member(services().read_db, me.organization_id, member_id)
    return {"message": "The member's role was changed.", "member": member}


@blp.route("/members/<uuid:member_id>/transfer-ownership", methods=["POST"])
@answers(err.OwnerOnlyError, err.MemberNotFoundError, err.AlreadyOwnerError, err.ConflictError)
@blp.response(200, MessageSchema)
@requires()
def transfer_ownership(me: Membership, member_id: UUID) -> Any:
    """Make another member the Owner (Owner only); the old Owner becomes an Admin."""
    execute(lambda: services().organizations.transfer_ownership(me.organization_id, me.actor, member_id))
    return {"message": "Ownership was transferred; you are now an Admin."}


def _members_as_of(me: Membership, args: dict[str, Any]) -> Any:
    check_history_reader(me)
    db, at = services().read_db, args["asOf"]
    role = None
    if args.get("role"):  # a role of then, perhaps deleted since
        role = role_named(access.roles_as_of(db, me.organization_id, at, counted=False), args["role"])
    with checked_cursor():
        return access.members_as_of(db, me.organization_id, at, role, args.get("q"), args["limit"], args.get("cursor"))


def _role_filter(organization_id: UUID, role: str | None) -> str | None:
    """`?role=` takes a role id or a role name."""
    if not role:
        return None
    return role_named(roles_reads.list_roles(services().read_db, organization_id, counted=False), role)
