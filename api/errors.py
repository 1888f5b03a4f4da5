"""Every failure becomes an RFC 9457 problem (`application/problem+json`), mapped in one place.

Body: `type`, `title`, `status`, `detail`, a stable `code`, and `errors` (per
field) on validation failures. Nothing ever carries a traceback: an
unexpected error is logged with a request id, which the 500 problem repeats.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, g, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from membership import Receipt
from membership import exceptions as domain
from projections.engine.outages import is_transient
from projections.engine.store import OrganizationDegradedError, ReadModelLaggingError

log = logging.getLogger("api.errors")
PROBLEM_TYPE = "https://ocore.dev/problems/"

# Domain error base class -> HTTP status (the most specific base wins).
DOMAIN_STATUS: list[tuple[type[domain.MembershipError], int]] = [
    (domain.NotFoundError, 404),
    (domain.PermissionDeniedError, 403),
    (domain.ConflictError, 409),
    (domain.GoneError, 410),
    (domain.InvalidValueError, 422),
]

# Codes for HTTP errors raised by Flask, werkzeug or webargs.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "database_unavailable",
}


class ApiError(Exception):
    """An error the HTTP layer itself raises (authentication, headers, rate limits)."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


class SavedButUnconfirmedError(Exception):
    """The command was saved, but the read models could not show it in time (HTTP 503 naming what was saved)."""

    def __init__(self, receipt: Receipt, reason: Exception) -> None:
        super().__init__(str(reason))
        self.receipt, self.reason = receipt, reason


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> ResponseReturnValue:
    body = {
        "type": PROBLEM_TYPE + code.replace("_", "-"),
        "title": _title(status),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    """Map every exception class to its problem, once, by base class."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(domain.MembershipError, _domain_error)
    app.register_error_handler(SavedButUnconfirmedError, _saved_but_unconfirmed)
    app.register_error_handler(OrganizationDegradedError, _degraded)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _api_error(error: ApiError) -> ResponseReturnValue:
    return problem(error.status, error.code, error.detail, error.headers, **error.extra)


def _domain_error(error: domain.MembershipError) -> ResponseReturnValue:
    status = next((status for base, status in DOMAIN_STATUS if isinstance(error, base)), 409)
    extra: dict[str, Any] = {}
    if isinstance(error, domain.InvalidValueError):
        extra["errors"] = {error.field: [error.message]}
    if isinstance(error, domain.MissingPermissionError):
        extra["permission"] = error.permission
    return problem(status, error.code, error.message, **extra)


def _saved_but_unconfirmed(error: SavedButUnconfirmedError) -> ResponseReturnValue:
    """The change is stored for good; only showing it failed. Say so, and name what was saved."""
    receipt = error.receipt
    log.warning("command saved at position %s but not confirmed: %s", receipt.position, error.reason)
    saved = {"organizationId": str(receipt.organization_id), "position": receipt.position,
             "id": str(receipt.id) if receipt.id else None}  # fmt: skip
    what = f" ({receipt.id})" if receipt.id else ""
    detail = (
        f"The change{what} was saved (event position {receipt.position}), but {_why_unconfirmed(error.reason)}."
        " Do not repeat it blindly: read it back shortly, or retry with the same Idempotency-Key."
    )
    code = "organization_degraded" if isinstance(error.reason, OrganizationDegradedError) else "read_model_lagging"
    return problem(503, code, detail, {"Retry-After": "1"}, saved=saved)


def _why_unconfirmed(reason: Exception) -> str:
    if isinstance(reason, OrganizationDegradedError):
        return f"{reason}, so it cannot be shown yet"
    if isinstance(reason, ReadModelLaggingError):
        return "the read models have not caught up yet"
    return "the database stopped answering before the read models could show it"


def _degraded(error: OrganizationDegradedError) -> ResponseReturnValue:
    detail = f"This organization's data cannot be shown reliably: {error}. The operators have been told; retry later."
    return problem(503, "organization_degraded", detail, {"Retry-After": "30"})


def _unavailable() -> ResponseReturnValue:
    detail = "The database is not answering right now; retry shortly."
    return problem(503, "database_unavailable", detail, {"Retry-After": "2"})


def _http_error(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if status == 400 and messages and "json" in messages and "Invalid JSON" in str(messages["json"]):
        return problem(400, "malformed_json", "The request body is not valid JSON.")
    query = (messages or {}).get("query") if isinstance(messages, dict) else None
    unknown = sorted(name for name, said in (query or {}).items() if said == ["Unknown field."])
    if status == 422 and unknown:
        return problem(400, "unknown_parameter", f"Unknown query parameters: {', '.join(unknown)}.",
                       errors={name: "Unknown parameter." for name in unknown})  # fmt: skip
    if status == 422 and messages:
        return problem(
            422, "validation_failed", "The request has invalid or unknown fields.", errors=_flatten(messages)
        )
    if status == 413:
        return problem(413, "payload_too_large", "The request body is larger than 64 KiB.")
    headers = {
        name: value for name, value in error.get_headers() if name.lower() != "content-type"
    }  # e.g. Allow on 405
    return problem(status, HTTP_CODES.get(status, "http_error"), error.description or _title(status), headers)


def _unexpected(error: Exception) -> ResponseReturnValue:
    if isinstance(error, HTTPException):
        return _http_error(error)
    if is_transient(error):
        log.warning("database unavailable (request %s): %s", getattr(g, "request_id", "-"), error)
        return _unavailable()
    request_id = getattr(g, "request_id", "-")
    log.error("unexpected error (request %s)", request_id, exc_info=error)
    detail = f"An unexpected error occurred. Quote request id {request_id} when reporting it."
    return problem(500, "internal_error", detail, requestId=request_id)


def _flatten(messages: dict[str, Any]) -> dict[str, Any]:
    """webargs nests errors by location ({"json": {...}}); clients want them by field."""
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
