"""`/api/auth/accept-invite` and `/api/auth/accept-invite-link`: join with a token or a code.

No organization header is needed: the token or code names its organization.
"""

from __future__ import annotations

from typing import Any

from api.auth import current_caller_with_email
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services
from api.problems import RATE_LIMITED, WITH_EMAIL, answers
from api.ratelimit import failures_counted
from api.schemas import AcceptInviteLinkSchema, AcceptInviteSchema, JoinedSchema
from membership import Receipt
from membership import exceptions as err
from membership.exceptions import InvalidInvitationTokenError, InvalidInviteLinkCodeError
from projections import members as members_reads

blp = Blueprint("accept", __name__, url_prefix="/api/auth", description="Accepting invitations")
# Refusals that may be guesses: they count towards the caller's failed-accept limit (api.ratelimit).
GUESSES = (InvalidInvitationTokenError, InvalidInviteLinkCodeError)


@blp.route("/accept-invite", methods=["POST"])
@answers(
    WITH_EMAIL, RATE_LIMITED, err.InvalidInvitationTokenError, err.InvitationReplacedError,
    err.OrganizationDeletedError, err.InvitationAlreadyAcceptedError, err.InvitationCancelledError, err.InvitationExpiredError,
    err.EmailNotVerifiedError, err.InvitationEmailMismatchError, err.AlreadyMemberError, err.ConflictError,
)  # fmt: skip
@blp.arguments(AcceptInviteSchema)
@blp.response(200, JoinedSchema)
def accept_invite(body: dict[str, Any]) -> Any:
    """Accept an e-mail invitation; the token's e-mail must be the invited one."""
    user = current_caller_with_email()
    with failures_counted(user.user_id, *GUESSES):
        receipt = execute(lambda: services().organizations.accept_invitation(user, body["token"]))
    return _joined(receipt)


@blp.route("/accept-invite-link", methods=["POST"])
@answers(
    WITH_EMAIL, RATE_LIMITED, err.InvalidInviteLinkCodeError, err.OrganizationDeletedError, err.InviteLinkDeletedError,
    err.InviteLinkExpiredError, err.InvalidValueError, err.AlreadyMemberError, err.InviteLinkAlreadyUsedError,
    err.InviteLinkUsedUpError, err.ConflictError,
)  # fmt: skip
@blp.arguments(AcceptInviteLinkSchema)
@blp.response(200, JoinedSchema)
def accept_invite_link(body: dict[str, Any]) -> Any:
    """Join through an invite link's code."""
    user = current_caller_with_email()
    with failures_counted(user.user_id, *GUESSES):
        receipt = execute(lambda: services().organizations.accept_invite_link(user, body["code"]))
    return _joined(receipt)


def _joined(receipt: Receipt) -> dict[str, Any]:
    assert receipt.id is not None
    member = members_reads.get_member(services().read_db, receipt.organization_id, receipt.id)
    return {"organizationId": str(receipt.organization_id), "member": member}
