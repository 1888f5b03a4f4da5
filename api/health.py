"""`GET /api/health`: is the database reachable, and how far behind are the read models."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from api.bootstrap import Services
from projections import store

log = logging.getLogger(__name__)
blueprint = Blueprint("health", __name__, url_prefix="/api")


@blueprint.get("/health")
def health() -> ResponseReturnValue:
    services: Services = current_app.extensions["membership"]
    try:
        latest = services.organizations.recorder.max_notification_id() or 0
        projections = store.status(services.read_db, latest)
    except Exception as error:  # any store failure means "unhealthy", never a 500
        log.warning("health check: database unreachable: %s", error)
        return jsonify(status="unavailable", database="unreachable"), 503
    failed = [p.name for p in projections if p.error]
    body = {
        "status": "degraded" if failed else "ok",
        "database": "ok",
        "position": latest,
        "projections": {
            p.name: {"position": p.position, "lag": p.lag, "error": p.error} for p in projections if p.state == "active"
        },
    }
    return jsonify(body), 503 if failed else 200
