"""`/api/invitations` and `/api/invite-links`: list, cancel, resend; create and delete links."""

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
from api.schemas import (
    InvitationListSchema,
    InvitationSchema,
    InvitationsQuerySchema,
    InviteLinkCreateSchema,
    InviteLinkListSchema,
    InviteLinkSchema,
    MessageSchema,
    PageQuerySchema,
    ResendSchema,
)
from membership import exceptions as err
from membership.permissions import MANAGE_MEMBERS
from projections import access
from projections import invitations as invitations_reads
from projections.engine.reading import Page
from projections.invitations import InviteLinkRecord

blp = Blueprint("invitations", __name__, url_prefix="/api", description="Invitations and invite links")


@blp.route("/invitations", methods=["GET"])
@blp.arguments(InvitationsQuerySchema, location="query")
@blp.response(200, InvitationListSchema)
@requires(MANAGE_MEMBERS)
def list_invitations(me: Membership, args: dict[str, Any]) -> Any:
    """Invitations by status, newest first (manage:members: they reveal invitees); as they were at `asOf`
    (view:members too)."""
    if args.get("asOf"):
        check_history_reader(me)
        with checked_cursor():
            return access.invitations_as_of(
                services().read_db, me.organization_id, args["asOf"], args["status"], args["limit"], args.get("cursor")
            )
    try:
        return invitations_reads.list_invitations(
            services().read_db, me.organization_id, utc_now(), args["status"], args["limit"], args.get("cursor")
        )
    except ValueError:
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.") from None


@blp.route("/invitations/<uuid:invitation_id>", methods=["DELETE"])
@answers(
    err.MissingPermissionError, err.InvitationNotFoundError, err.InvitationNotPendingError,
    err.PrivilegeEscalationError, err.ConflictError,
)  # fmt: skip
@blp.response(200, MessageSchema)
@requires()
def cancel_invitation(me: Membership, invitation_id: UUID) -> Any:
    """Cancel a pending (or expired) invitation (manage:members)."""
    execute(lambda: services().organizations.cancel_invitation(me.organization_id, me.actor, invitation_id))
    return {"message": "The invitation was cancelled."}


@blp.route("/invitations/<uuid:invitation_id>/resend", methods=["POST"])
@answers(
    RATE_LIMITED, err.MissingPermissionError, err.InvitationNotFoundError,
    err.InvitationNotPendingError, err.PrivilegeEscalationError, err.ConflictError,
)  # fmt: skip
@blp.arguments(ResendSchema, required=False)
@blp.response(200, InvitationSchema)
@requires()
def resend_invitation(me: Membership, body: dict[str, Any], invitation_id: UUID) -> Any:
    """A new token and expiry; the previous link stops working (manage:members)."""
    check_invitation_rate(me.actor.user_id)
    organizations = services().organizations
    execute(
        lambda: organizations.resend_invitation(me.organization_id, me.actor, invitation_id, body.get("expiresInDays"))
    )
    return invitations_reads.get_invitation(services().read_db, me.organization_id, invitation_id, utc_now())


@blp.route("/invite-links", methods=["POST"])
@answers(
    err.MissingPermissionError, err.RoleNotFoundError, err.OwnerRoleNotAssignableError,
    err.PrivilegeEscalationError, err.ConflictError,
)  # fmt: skip
@blp.arguments(InviteLinkCreateSchema)
@blp.response(201, InviteLinkSchema)
@requires()
def create_invite_link(me: Membership, body: dict[str, Any]) -> Any:
    """A shareable link granting a role, with a use limit (0 = unlimited) and an expiry (manage:members)."""
    receipt = execute(
        lambda: services().organizations.create_invite_link(
            me.organization_id, me.actor, body["roleId"], body["maxUses"], body["expiresInDays"]
        )
    )
    assert receipt.id is not None and receipt.secret is not None
    record = invitations_reads.get_invite_link(services().read_db, me.organization_id, receipt.id)
    assert record is not None
    return _with_code(record, receipt.secret)


@blp.route("/invite-links", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, InviteLinkListSchema)
@requires(MANAGE_MEMBERS)
def list_invite_links(me: Membership, args: dict[str, Any]) -> Any:
    """Links not deleted, newest first, with their codes (manage:members)."""
    with checked_cursor():
        page = invitations_reads.list_invite_links(
            services().read_db, me.organization_id, args["limit"], args.get("cursor")
        )
    codes = services().organizations.invite_link_codes(me.organization_id)
    return Page([_with_code(record, codes[UUID(record.id)]) for record in page.items], page.total, page.next_cursor)


@blp.route("/invite-links/<uuid:link_id>", methods=["DELETE"])
@answers(err.MissingPermissionError, err.InviteLinkNotFoundError, err.PrivilegeEscalationError, err.ConflictError)
@blp.response(200, MessageSchema)
@requires()
def delete_invite_link(me: Membership, link_id: UUID) -> Any:
    """Delete a link: it stops working at once (manage:members)."""
    execute(lambda: services().organizations.delete_invite_link(me.organization_id, me.actor, link_id))
    return {"message": "The invite link was deleted."}


def _with_code(record: InviteLinkRecord, code: str) -> dict[str, Any]:
    return {"record": record, "code": code, "url": f"{services().settings.public_url}/join/{code}"}
