"""`GET /api/health`: is the database reachable, and how far behind are the read models."""

from __future__ import annotations

import logging
from typing import Any

from flask_smorest import Blueprint

from api.context import services
from api.errors import ApiError
from api.schemas import HealthSchema
from projections import store

log = logging.getLogger(__name__)
blp = Blueprint("health", __name__, url_prefix="/api", description="Service health")


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
def health() -> Any:
    """200 when the database answers and no read model has stopped; 503 otherwise."""
    try:
        latest = services().organizations.recorder.max_notification_id() or 0
        projections = [p for p in store.status(services().read_db, latest) if p.state == "active"]
    except Exception as error:  # any store failure means "unhealthy", never a 500
        log.warning("health check: database unreachable: %s", error)
        raise ApiError(503, "database_unreachable", "The database does not answer.") from None
    failed = [p for p in projections if p.error]
    if failed:
        raise ApiError(503, "read_model_stopped", f"The {failed[0].name!r} read model stopped: {failed[0].error}")
    return {
        "status": "ok",
        "database": "ok",
        "position": latest,
        "projections": {p.name: {"position": p.position, "lag": p.lag} for p in projections},
    }
