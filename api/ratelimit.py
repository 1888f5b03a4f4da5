"""At most MEMBERSHIP_INVITES_PER_HOUR invitations (and resends) per actor per hour.

Counted from the audit log, so every API process agrees and a restart forgets nothing.
"""

from __future__ import annotations

import math
from datetime import timedelta

from api.context import services, utc_now
from api.errors import ApiError
from projections import queries

WINDOW = timedelta(hours=1)


def check_invitation_rate(user_id: str) -> None:
    limit = services().settings.invites_per_hour
    now = utc_now()
    sent = queries.invitations_sent_since(services().read_db, user_id, now - WINDOW)
    if len(sent) >= limit:
        retry_after = max(1, math.ceil((sent[len(sent) - limit] + WINDOW - now).total_seconds()))
        raise ApiError(
            429,
            "rate_limited",
            f"You can send {limit} invitations an hour; try again in {retry_after} seconds.",
            {"Retry-After": str(retry_after)},
        )
