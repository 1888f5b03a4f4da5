"""Per-user limits, exact across threads and API processes (slots in `projections.ratelimit_slots`).

- invitations and resends: MEMBERSHIP_INVITES_PER_HOUR per user an hour;
- new organizations: MEMBERSHIP_ORGANIZATIONS_PER_HOUR per user an hour;
- failed accepts (a token or code that is not valid): MEMBERSHIP_ACCEPT_FAILURES per user in
  MEMBERSHIP_ACCEPT_FAILURE_WINDOW_SECONDS (10 in 10 minutes); then every accept is refused untried;
- failed previews (the same), as many per client address, counted with the accept pages' look-ups.

Over a limit the answer is 429 `rate_limited` with `Retry-After` (seconds).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from flask import Response, after_this_request, request

from api import idempotency
from api.context import services, utc_now
from api.errors import ApiError
from projections import ratelimit_slots

if TYPE_CHECKING:  # settings are handed in by the service package (service.bootstrap)
    from service.settings import Settings

log = logging.getLogger("api.ratelimit")


@dataclass(frozen=True)
class Limit:
    bucket: str
    what: str  # what the caller may do, for the 429 message: "send {n} invitations"
    allowed: Callable[[Settings], int]
    window: Callable[[Settings], timedelta]


HOUR = timedelta(hours=1)
INVITATIONS = Limit(
    "invitations", "send {n} invitations (resends included)", lambda s: s.invites_per_hour, lambda s: HOUR
)
ORGANIZATIONS = Limit("organizations", "create {n} organizations", lambda s: s.organizations_per_hour, lambda s: HOUR)
ACCEPT_FAILURES = Limit(
    "accept-failures",
    "try {n} invalid invitation tokens or link codes",
    lambda s: s.accept_failures,
    lambda s: timedelta(seconds=s.accept_failure_window_s),
)
LOOKUP_FAILURES = Limit(
    ratelimit_slots.LOOKUP_FAILURES,
    "look up {n} invalid invitation tokens or link codes",
    lambda s: s.accept_failures,
    lambda s: timedelta(seconds=s.accept_failure_window_s),
)


def check_invitation_rate(user_id: str) -> None:
    """Use one of the user's invitation slots for this request (given back if the request is refused)."""
    if idempotency.saved_receipt() is None:  # a retry completing a saved invitation used its slot already
        _held_unless_refused(take(INVITATIONS, user_id))


def check_organization_rate(user_id: str) -> None:
    """Use one of the user's organization slots for this request (given back if the request is refused)."""
    if idempotency.saved_receipt() is None:
        _held_unless_refused(take(ORGANIZATIONS, user_id))


def lookups_counted(*failures: type[Exception]) -> AbstractContextManager[None]:
    """Like `failures_counted`, for the client's address (look-ups need no token)."""
    return _counted(LOOKUP_FAILURES, ratelimit_slots.address_subject(request.remote_addr), failures)


def failures_counted(user_id: str, *failures: type[Exception]) -> AbstractContextManager[None]:
    """Refuse untried past the user's failed-accept limit; the block's attempt counts only if it raises `failures`."""
    return _counted(ACCEPT_FAILURES, user_id, failures)


@contextmanager
def _counted(limit: Limit, subject: str, failures: tuple[type[Exception], ...]) -> Iterator[None]:
    slot = take(limit, subject)
    try:
        yield
    except failures:
        raise
    except BaseException:
        _give_back(slot)
        raise
    _give_back(slot)


def take(limit: Limit, subject: str) -> ratelimit_slots.Slot:
    """A slot of `limit` for `subject`, or 429 with Retry-After."""
    settings, now = services().settings, utc_now()
    allowed, window = limit.allowed(settings), limit.window(settings)
    try:
        return ratelimit_slots.reserve(services().read_db, limit.bucket, subject, allowed, window, now)
    except ratelimit_slots.LimitReachedError as full:
        retry_after = max(1, math.ceil((full.retry_at - now).total_seconds()))
        raise ApiError(
            429,
            "rate_limited",
            f"You can {limit.what.format(n=allowed)} in {_duration(window)}; try again in {retry_after} seconds.",
            {"Retry-After": str(retry_after)},
        ) from None


def _held_unless_refused(slot: ratelimit_slots.Slot) -> None:
    """A request answered 4xx (refused by the domain or the API) did not happen: its slot is given back."""

    @after_this_request
    def settle(response: Response) -> Response:
        if 400 <= response.status_code < 500:
            _give_back(slot)
        return response


def _give_back(slot: ratelimit_slots.Slot) -> None:
    try:
        ratelimit_slots.release(services().read_db, slot)
    except Exception:  # the answer stands; the slot merely stays taken until its window passes
        log.exception("could not give back a %s slot", slot.bucket)


def _duration(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds == 3600:
        return "an hour"
    return f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"
