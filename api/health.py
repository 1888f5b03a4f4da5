"""`GET /api/health`: is the event store reachable, and how far has it got."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from membership import Organizations

log = logging.getLogger(__name__)
blueprint = Blueprint("health", __name__, url_prefix="/api")


@blueprint.get("/health")
def health() -> ResponseReturnValue:
    organizations: Organizations = current_app.extensions["membership"]
    try:
        position = organizations.recorder.max_notification_id()
    except Exception as error:  # any store failure means "unhealthy", never a 500
        log.warning("health check: event store unreachable: %s", error)
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok", position=position or 0)
