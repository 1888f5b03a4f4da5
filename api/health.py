"""`GET /api/health`: does the database answer, are the read models keeping up, is mail going out.

503 when the database does not answer, or a read model has events waiting and
has not moved for a while (its runner is gone, or its tables fail): commands
would answer 503 too. 200 otherwise, `degraded` when some organization's
events are parked or invitation e-mail is failing, with what operators need.
"""

from __future__ import annotations

import logging
from typing import Any

from api.blueprint import Blueprint
from api.context import services, utc_now
from api.errors import ApiError
from api.problems import answers
from api.schemas import HealthSchema
from projections import outbox
from projections.engine import parking, store

log = logging.getLogger(__name__)
blp = Blueprint("health", __name__, url_prefix="/api", description="Service health")
PARKED_SHOWN = 20


@blp.route("/health", methods=["GET"])
@answers({503: ("database_unreachable", "read_model_stalled")}, public=True)
@blp.response(200, HealthSchema)
def health() -> Any:
    """The database, each read model's lag (stalled, parked), and invitation e-mail."""
    db = services().read_db
    try:
        latest = services().organizations.recorder.max_notification_id() or 0
        projections = [p for p in store.status(db, latest) if p.state == "active"]
        parked = parking.active(db, limit=PARKED_SHOWN)
        mail = outbox.health(db, utc_now())
    except Exception as error:  # any store failure means "unhealthy", never a 500
        log.warning("health check: database unreachable: %s", error)
        raise ApiError(503, "database_unreachable", "The database does not answer.", {"Retry-After": "2"}) from None
    summary = {p.name: _projection(p) for p in projections}
    stalled = [p for p in projections if p.stalled]
    if stalled:
        first = stalled[0]
        why = first.error or f"{first.lag} events wait and its position has not moved for {store.STALLED_AFTER_S:.0f} s"
        raise ApiError(
            503, "read_model_stalled", f"The {first.name!r} read model is not keeping up: {why}.",
            {"Retry-After": "5"}, projections=summary,
        )  # fmt: skip
    degraded = bool(parked) or mail.status != "ok"
    return {
        "status": "degraded" if degraded else "ok",
        "database": "ok",
        "position": latest,
        "projections": summary,
        "parked": [event.as_json() for event in parked],
        "mail": {
            "status": mail.status,
            "retrying": mail.retrying,
            "failedLastHour": mail.failed_last_hour,
            "sentLastHour": mail.sent_last_hour,
            "oldestDueAgeSeconds": mail.oldest_due_age_s,
            "lastError": mail.last_error,
        },
    }


def _projection(status: store.ProjectionStatus) -> dict[str, Any]:
    return {
        "position": status.position,
        "lag": status.lag,
        "parked": status.parked,
        "stalled": status.stalled,
        "error": status.error,
    }
