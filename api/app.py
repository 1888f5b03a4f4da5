"""The Flask app: its blueprints, request limits, access log and error handlers, built by `create_app`."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flask import Flask, g, request
from flask.typing import ResponseReturnValue
from flask_cors import CORS
from flask_smorest import Api
from marshmallow import Schema, fields

from api import (
    accept,
    audit,
    health,
    history,
    idempotency,
    invitations,
    jobs,
    members,
    operator,
    organizations,
    previews,
    roles,
)
from api.errors import ApiError, register_error_handlers
from api.problems import AnswersPlugin

if TYPE_CHECKING:  # the service package builds the parts; this adapter only uses them
    from service.bootstrap import Services

MAX_BODY_BYTES = 64 * 1024
MAX_BULK_BODY_BYTES = 1024 * 1024  # 10,000 member ids
BULK_PATHS = ("/api/members/bulk/",)
access_log = logging.getLogger("api.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
SECRET_PATH_ARGUMENTS = ("code", "token")  # route arguments that are secrets (web.accept_pages: /join/<code>)
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "X-Organization-Id", "Idempotency-Key", "X-Request-Id"]
CORS_RESPONSE_HEADERS = ["X-Request-Id", "Retry-After", "Location"]


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error is answered."""

    type = fields.String(required=True, metadata={"format": "uri"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True, metadata={"description": "Stable, machine-readable error code"})
    errors = fields.Dict(metadata={"description": "Per-field messages, on validation errors"})
    permission = fields.String(metadata={"description": "The permission missing, with `missing_permission`"})
    saved = fields.Dict(metadata={"description": "What was saved (organizationId, position, id), on a 503"})
    requestId = fields.String(metadata={"description": "The id to quote, with `internal_error`"})
    projections = fields.Dict(metadata={"description": "Each read model's state, with `read_model_stalled`"})


class MembershipApi(Api):  # type: ignore[misc]
    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = None  # each operation lists its own problems (api.problems)

    def __init__(self, app: Flask) -> None:
        super().__init__(app, spec_kwargs={"extra_plugins": [AnswersPlugin(ProblemSchema)]})


def create_app(services: Services) -> Flask:
    """The WSGI app over the service's parts (`service.bootstrap` builds them, after any fork)."""
    services.settings.token_verification()  # fail at start-up, not on the first request
    app = Flask(__name__)
    app.extensions["membership"] = services
    app.config.update(_api_config(), MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    api = MembershipApi(app)
    modules = (organizations, members, history, jobs, previews, invitations, accept, roles, audit, health, operator)
    for module in modules:
        api.register_blueprint(module.blp)
    register_error_handlers(app)
    _allow_cross_origin(app, services.settings.cors_origins)
    app.before_request(_start_request)
    app.before_request(idempotency.begin)
    app.after_request(idempotency.complete)
    app.after_request(_log_request)
    _configure_access_log()
    return app


def _allow_cross_origin(app: Flask, origins: tuple[str, ...]) -> None:
    """Front-ends served from `origins` may call /api/* with a bearer token; never with cookies."""
    if origins:
        rules = {"origins": list(origins), "allow_headers": CORS_REQUEST_HEADERS,
                 "expose_headers": CORS_RESPONSE_HEADERS, "supports_credentials": False, "max_age": 600}  # fmt: skip
        CORS(app, resources={r"/api/*": rules})


def _configure_access_log() -> None:
    """One JSON object per line on stderr, ready for a log shipper."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def _api_config() -> dict[str, object]:
    return {
        "API_TITLE": "oCore Members API",
        "API_VERSION": "1.0.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        "API_SPEC_OPTIONS": {
            "info": {
                "description": "Organization members, invitations, invite links and roles. Every error is an RFC 9457"
                " problem (`application/problem+json`) with a stable `code`; each operation lists, by status, the"
                " codes it can answer. Before any operation, `membership serve` may refuse a request that is not valid,"
                " complete or small enough HTTP/1.1 (400, 408, 414, 417, 431, 501), and any path may be answered"
                " 404 `not_found` or 405 `method_not_allowed` (with `Allow`)."
            },
            "security": [{"bearerAuth": []}],
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
                "parameters": {
                    "OrganizationId": {
                        "in": "header",
                        "name": "X-Organization-Id",
                        "schema": {"type": "string", "format": "uuid"},
                        "description": "The active organization (else the token's org_id claim)",
                    },
                    "IdempotencyKey": {
                        "in": "header",
                        "name": "Idempotency-Key",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
                        "description": "Printable ASCII naming this command: a retry with the same key and request "
                        "gets the first answer again (kept 24 hours), never a second change",
                    },
                },
            },
        },
    }


def _start_request() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex  # echoed in headers and logs
    g.started = time.perf_counter()
    if request.path.startswith(BULK_PATHS):
        request.max_content_length = MAX_BULK_BODY_BYTES
    if request.routing_exception is not None:
        return  # no such route or method: its 404/405 comes first
    if not request.path.startswith("/api/"):
        return  # a page (web): its forms are sent form-encoded
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and _has_body() and not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON (Content-Type: application/json).")


def _has_body() -> bool:
    return bool(request.content_length) or request.headers.get("Transfer-Encoding", "") == "chunked"


def _loggable_path() -> str:
    """The path, without the secret some carry (an invite link's code: `/join/{code}`): a log must not let its
    readers join. Tokens in query strings are never logged (the query is not)."""
    path = request.path
    for name in SECRET_PATH_ARGUMENTS:
        secret = (request.view_args or {}).get(name)
        if secret:
            path = path.replace(str(secret), "…")
    return path


def _log_request(response: ResponseReturnValue) -> ResponseReturnValue:
    duration_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "method": request.method,
        "path": _loggable_path(),
        "status": response.status_code,  # type: ignore[union-attr]
        "duration_ms": round(duration_ms, 1),
        "request_id": g.get("request_id"),
        "user_id": g.get("user_id"),
    }
    access_log.info(json.dumps(record))
    response.headers["X-Request-Id"] = g.get("request_id", "")  # type: ignore[union-attr]
    return response
