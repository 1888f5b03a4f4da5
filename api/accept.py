"""`/api/auth/accept-invite` and `/api/auth/accept-invite-link`: join with a token or a code.

No organization header is needed: the token or code names its organization.
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.auth import current_caller
from api.context import services, settled
from api.errors import ApiError
from api.schemas import AcceptInviteLinkSchema, AcceptInviteSchema, JoinedSchema
from membership import Actor, Receipt
from projections import queries

blp = Blueprint("accept", __name__, url_prefix="/api/auth", description="Accepting invitations")


@blp.route("/accept-invite", methods=["POST"])
@blp.arguments(AcceptInviteSchema)
@blp.response(200, JoinedSchema)
def accept_invite(body: dict[str, Any]) -> Any:
    """Accept an e-mail invitation; the token's e-mail must be the invited one."""
    return _joined(settled(services().organizations.accept_invitation(_user_with_email(), body["token"])))


@blp.route("/accept-invite-link", methods=["POST"])
@blp.arguments(AcceptInviteLinkSchema)
@blp.response(200, JoinedSchema)
def accept_invite_link(body: dict[str, Any]) -> Any:
    """Join through an invite link's code."""
    return _joined(settled(services().organizations.accept_invite_link(_user_with_email(), body["code"])))


def _user_with_email() -> Actor:
    actor = current_caller().actor
    if not actor.email:
        raise ApiError(403, "email_claim_required", "Your token has no email claim; joining needs a verified e-mail.")
    return actor


def _joined(receipt: Receipt) -> dict[str, Any]:
    assert receipt.id is not None
    member = queries.get_member(services().read_db, receipt.organization_id, receipt.id)
    return {"organizationId": str(receipt.organization_id), "member": member}
