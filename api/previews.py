"""`/api/invitations/preview` and `/api/invite-links/preview`: what a token or code offers, for front-ends
of their own that show it before the holder signs in. No token needed; failed look-ups are limited per
client address (with the accept pages'), so codes cannot be guessed at speed."""

from __future__ import annotations

from typing import Any

from api.blueprint import Blueprint
from api.context import services
from api.problems import RATE_LIMITED, answers
from api.ratelimit import lookups_counted
from api.schemas import (
    InvitationPreviewSchema,
    InviteLinkPreviewSchema,
    PreviewCodeQuerySchema,
    PreviewTokenQuerySchema,
)
from membership import exceptions as err
from membership.permissions import in_words
from membership.previews import Offer

blp = Blueprint("previews", __name__, url_prefix="/api", description="Previews of invitations and invite links")
GUESSES = (err.InvalidInvitationTokenError, err.InvalidInviteLinkCodeError)


@blp.route("/invitations/preview", methods=["GET"])
@answers(
    RATE_LIMITED,
    err.InvalidInvitationTokenError,
    err.InvitationReplacedError,
    err.OrganizationDeletedError,
    public=True,
)
@blp.arguments(PreviewTokenQuerySchema, location="query")
@blp.response(200, InvitationPreviewSchema)
def preview_invitation(args: dict[str, Any]) -> Any:
    """What an invitation token offers and its status (pending, accepted, expired, cancelled)."""
    with lookups_counted(*GUESSES):
        return _with_role(services().organizations.preview_invitation(args["token"]))


@blp.route("/invite-links/preview", methods=["GET"])
@answers(RATE_LIMITED, err.InvalidInviteLinkCodeError, err.OrganizationDeletedError, public=True)
@blp.arguments(PreviewCodeQuerySchema, location="query")
@blp.response(200, InviteLinkPreviewSchema)
def preview_invite_link(args: dict[str, Any]) -> Any:
    """What an invite link's code offers and its status (active, expired, deleted, used_up)."""
    with lookups_counted(*GUESSES):
        return _with_role(services().organizations.preview_invite_link(args["code"]))


def _with_role(offer: Offer) -> dict[str, Any]:
    """The offer's fields, its role's in the API's shape (with what it allows, in words)."""
    role = offer.role
    described = None if role is None else {
        "id": str(role.id), "name": role.name, "description": role.description,
        "permissions": sorted(role.permissions), "allows": in_words(role.permissions),
    }  # fmt: skip
    return {**offer.__dict__, "role": described}
