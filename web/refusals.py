"""Every refusal a page can meet, as a page of its own: what happened and what to do next.

Registered on each page blueprint, like `api.errors` for the API: views raise, this renders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from membership import exceptions as err

log = logging.getLogger("web")


@dataclass(frozen=True)
class Refusal:
    status: int
    title: str
    next_step: str


ASK_AGAIN = "Ask the person who invited you to send a new invitation."
PAGES: dict[type[Exception], Refusal] = {
    err.InvalidInvitationTokenError: Refusal(
        404, "This invitation link is not valid",
        "Check that you opened the whole link from the e-mail (some mail programs break long links), or ask for a "
        "new invitation.",
    ),
    err.InvitationReplacedError: Refusal(
        410, "This invitation was replaced by a newer one",
        "The invitation was sent again, with a new link. Use the link in the most recent e-mail.",
    ),
    err.InvitationExpiredError: Refusal(410, "This invitation has expired", ASK_AGAIN),
    err.InvitationCancelledError: Refusal(410, "This invitation was cancelled", ASK_AGAIN),
    err.InvitationAlreadyAcceptedError: Refusal(
        410, "This invitation was already accepted", "If that was you, you are a member already: sign in to use it."
    ),
    err.InvitationEmailMismatchError: Refusal(
        403, "This invitation is for another e-mail address", "Sign in with the address the invitation was sent to."
    ),
    err.EmailNotVerifiedError: Refusal(
        403, "Your e-mail address is not verified",
        "Your identity provider says it has not verified your e-mail address. Verify it there, sign in again, and "
        "accept the invitation.",
    ),
    err.InvalidInviteLinkCodeError: Refusal(
        404, "This invite link is not valid", "Check that you copied the whole link, or ask for a new one."
    ),
    err.InviteLinkExpiredError: Refusal(410, "This invite link has expired", "Ask for a new invite link."),
    err.InviteLinkDeletedError: Refusal(410, "This invite link was deleted", "Ask for a new invite link."),
    err.InviteLinkUsedUpError: Refusal(
        410, "This invite link has been used up", "It was used as many times as it allows. Ask for a new one."
    ),
    err.InviteLinkAlreadyUsedError: Refusal(
        410, "You have already used this invite link", "You can use an invite link only once."
    ),
    err.OrganizationDeletedError: Refusal(
        410, "This organization was deleted", "Its Owner deleted it, so there is nothing left to join."
    ),
    err.AlreadyMemberError: Refusal(409, "You are already a member", "There is nothing to accept."),
    err.ConflictError: Refusal(409, "That did not work this time", "Go back and try again in a moment."),
    err.PermissionDeniedError: Refusal(403, "This page is not for you", "Sign in with the account that may see it."),
    err.MembershipError: Refusal(400, "That cannot be done", "Go back and try again."),
}


def register(bp: Blueprint) -> None:
    bp.register_error_handler(err.MembershipError, refused)
    bp.register_error_handler(CSRFError, _form_expired)
    bp.register_error_handler(requests.RequestException, _provider_unavailable)
    bp.register_error_handler(HTTPException, _http_error)


def refusal_for(error: err.MembershipError) -> Refusal:
    """The page for a refusal: that of its class, else of the nearest class above it."""
    for cls in type(error).__mro__:
        if cls in PAGES:
            return PAGES[cls]
    return PAGES[err.MembershipError]


def refused(error: err.MembershipError) -> ResponseReturnValue:
    page = refusal_for(error)
    return render_template("refused.html", refusal=page, detail=error.message, code=error.code), page.status


def _form_expired(error: CSRFError) -> ResponseReturnValue:
    page = Refusal(400, "This form has expired", "Go back, reload the page and try again.")
    return render_template("refused.html", refusal=page, detail=error.description, code="csrf_failed"), 400


def _http_error(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    page = Refusal(status, error.name, "Go back and try again.")
    return render_template("refused.html", refusal=page, detail="", code=f"http_{status}"), status


def _provider_unavailable(error: requests.RequestException) -> ResponseReturnValue:
    log.warning("the identity provider does not answer: %s", error)
    page = Refusal(503, "Signing in is not possible right now", "The identity provider does not answer. Try again "
                   "in a few minutes.")  # fmt: skip
    return render_template("refused.html", refusal=page, detail="", code="identity_provider_unavailable"), 503
