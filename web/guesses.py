"""Token and code look-ups that fail are limited per client address, so codes cannot be guessed at speed.

Each look-up takes a slot (`projections.ratelimit_slots`, shared by every process) and gives it back
unless the token or code turned out not to be valid: only failures count. Past the limit every look-up
from that address is refused untried, with Retry-After, until its oldest failure is old enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from membership.exceptions import InvalidInvitationTokenError, InvalidInviteLinkCodeError
from projections import ratelimit_slots
from web.context import services, settings
from web.refusals import Refusal

GUESSES = (InvalidInvitationTokenError, InvalidInviteLinkCodeError)


class TooManyGuessesError(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many invalid links; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def subject() -> str:
    """Whose failures these are: the client's address (behind a proxy, as the proxy reports it to gunicorn)."""
    return ratelimit_slots.address_subject(request.remote_addr)


@contextmanager
def counted() -> Iterator[None]:
    """Refuse untried past the address's limit; the block's look-up counts only if it was a guess."""
    db, now = services().read_db, services().organizations.clock()
    window = timedelta(seconds=settings().accept_failure_window_s)
    try:
        slot = ratelimit_slots.reserve(db, ratelimit_slots.LOOKUP_FAILURES, subject(), settings().accept_failures, window, now)
    except ratelimit_slots.LimitReachedError as full:
        raise TooManyGuessesError(max(1, math.ceil((full.retry_at - now).total_seconds()))) from None
    try:
        yield
    except GUESSES:
        raise
    except BaseException:
        ratelimit_slots.release(db, slot)
        raise
    ratelimit_slots.release(db, slot)


def register(bp: Blueprint) -> None:
    bp.register_error_handler(TooManyGuessesError, _too_many)


def _too_many(error: TooManyGuessesError) -> ResponseReturnValue:
    page = Refusal(429, "Too many links that are not valid", "Wait a few minutes, then open the link again.")
    body = render_template("refused.html", refusal=page, detail=f"Try again in {error.retry_after_s} seconds.",
                           code="rate_limited")  # fmt: skip
    return body, 429, {"Retry-After": str(error.retry_after_s)}
