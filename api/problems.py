"""What every operation can answer, declared once and written into the OpenAPI document.

A view declares what is particular to it with `@answers(...)`: sets of codes, and
the domain errors it can raise (their status comes from `api.errors.DOMAIN_STATUS`,
as when they are answered); `@requires` (api.auth) adds IN_ORGANIZATION or MANAGER.
The rest follows from the operation's shape, as the server behaves: any request can
fail (500, 503); one with a token, 401, and 503 when the identity provider's keys
cannot be read; a command (POST, PUT, DELETE), 413, 415 and the Idempotency-Key
answers; a JSON body, 400 `malformed_json` and 422; query arguments, 400 `unknown_parameter` and 422; a list,
400 `invalid_cursor`; an id in the path, 404 `not_found` (it is not a UUID). Each
status gets an `application/problem+json` response whose `code` is an enum of
exactly the codes possible there.

An operation with neither `@answers` nor `@requires` stays undeclared, which the OpenAPI tests refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

import flask_smorest
from apispec import APISpec, BasePlugin
from marshmallow import Schema

from api.errors import DOMAIN_STATUS
from membership.exceptions import MembershipError

View = TypeVar("View", bound=Callable[..., Any])
Codes = Mapping[int, tuple[str, ...]]
EXTENSION = "x-answers"  # carries a view's declaration to the plugin, which removes it
PROBLEM_JSON = "application/problem+json"
COMMAND_METHODS = ("post", "put", "patch", "delete")

# -- sets that follow from an operation's shape --------------------------------------------------------------
EVERY_REQUEST: Codes = {500: ("internal_error",), 503: ("database_unavailable",)}
AUTHENTICATED: Codes = {
    401: ("missing_token", "invalid_token", "token_expired", "invalid_token_claims"),
    503: ("identity_provider_unavailable",),  # its signing keys (JWKS) cannot be read
}
COMMAND: Codes = {
    400: ("invalid_idempotency_key",),
    409: ("idempotency_key_reused", "idempotency_key_in_use"),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    503: ("read_model_lagging", "organization_degraded"),  # saved, but not yet shown by the read models
}
JSON_BODY: Codes = {400: ("malformed_json",), 422: ("validation_failed",)}
QUERY: Codes = {400: ("unknown_parameter",), 422: ("validation_failed",)}
PAGED: Codes = {400: ("invalid_cursor",)}
BY_ID: Codes = {404: ("not_found",)}

# -- sets a view declares --------------------------------------------------------------------------------------
IN_ORGANIZATION: Codes = {
    400: ("organization_required", "invalid_organization_id"),
    403: ("not_a_member",),
    503: ("organization_degraded",),
}
MANAGER: Codes = {**IN_ORGANIZATION, 403: ("not_a_member", "missing_permission")}  # @requires(a permission)
WITH_EMAIL: Codes = {403: ("email_claim_required",)}
RATE_LIMITED: Codes = {429: ("rate_limited",)}

# Header components; a required header is written out instead (a $ref cannot add `required`).
HEADERS: dict[str, dict[str, Any]] = {
    "RetryAfter": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}},
    "WwwAuthenticate": {"description": "The bearer challenge (RFC 6750)", "schema": {"type": "string"}},
    "Location": {"description": "Where the job's progress is read", "schema": {"type": "string"}},
    "IdempotentReplayed": {
        "description": "`true` when this is the kept answer to an earlier request with the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
STATUS_HEADERS = {401: {"WWW-Authenticate": "WwwAuthenticate"}, 429: {"Retry-After": "RetryAfter"},
                  503: {"Retry-After": "RetryAfter"}}  # fmt: skip


def answers(*declared: Codes | type[MembershipError], public: bool = False) -> Callable[[View], View]:
    """Declare what a view can answer besides success: sets of codes by status, and domain error classes.

    `public=True`: no token is needed (no 401, no security requirement).
    """
    codes: dict[int, tuple[str, ...]] = {}
    for item in declared:
        _merge(codes, {domain_status(item): (item.code,)} if isinstance(item, type) else item)

    def decorate(view: View) -> View:
        # Added to what the decorators below declared (`@requires`), after it.
        below = getattr(view, "_apidoc", {}).get("manual_doc", {}).get(EXTENSION, {"public": False, "codes": {}})
        merged = dict(below["codes"])
        _merge(merged, codes)
        declare: Callable[[View], View] = flask_smorest.Blueprint.doc(
            **{EXTENSION: {"public": public or below["public"], "codes": merged}}
        )
        return declare(view)

    return decorate


def domain_status(error: type[MembershipError]) -> int:
    return next((status for base, status in DOMAIN_STATUS if issubclass(error, base)), 409)


class AnswersPlugin(BasePlugin):  # type: ignore[misc]
    """Expands each declared operation into its problem responses, parameters and headers."""

    def __init__(self, problem_schema: type[Schema]) -> None:
        self.problem_schema = problem_schema

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        spec.components.schema("Problem", schema=self.problem_schema)
        for name, header in HEADERS.items():
            spec.components.header(name, header, lazy=True)

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any) -> None:
        for method, operation in (operations or {}).items():
            declared = operation.pop(EXTENSION, None)
            if declared is not None:
                _document(path or "", method, operation, declared["codes"], declared["public"])


def _document(path: str, method: str, operation: dict[str, Any], declared: Codes, public: bool) -> None:
    command = method in COMMAND_METHODS
    codes = _codes(path, operation, command, public, declared)
    responses = {str(status): response for status, response in operation.get("responses", {}).items()}
    responses |= {str(status): _problem(status, names) for status, names in codes.items()}
    for status, response in responses.items():
        if command and status.startswith("2"):
            response.setdefault("headers", {})["Idempotent-Replayed"] = "IdempotentReplayed"
        if status == "202":
            response.setdefault("headers", {})["Location"] = {**HEADERS["Location"], "required": True}
    operation["responses"] = dict(sorted(responses.items()))
    parameters = operation.setdefault("parameters", [])
    parameters += ["OrganizationId"] if "organization_required" in codes.get(400, ()) else []
    parameters += ["IdempotencyKey"] if command else []
    if public:
        operation["security"] = []


def _codes(path: str, operation: dict[str, Any], command: bool, public: bool, declared: Codes) -> Codes:
    query = [p.get("name") for p in operation.get("parameters", []) if isinstance(p, dict) and p.get("in") == "query"]
    codes: dict[int, tuple[str, ...]] = {}
    for applies, table in [
        (True, EVERY_REQUEST), (not public, AUTHENTICATED), (command, COMMAND), ("requestBody" in operation, JSON_BODY),
        (bool(query), QUERY), ("cursor" in query, PAGED), ("{" in path, BY_ID), (True, declared),
    ]:  # fmt: skip
        if applies:
            _merge(codes, table)
    return codes


def _problem(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    listed = ", ".join(f"`{code}`" for code in codes)
    schema = {
        "allOf": [
            "Problem",
            {"type": "object", "properties": {"status": {"type": "integer", "enum": [status]},
                                              "code": {"type": "string", "enum": list(codes)}}},
        ]
    }  # fmt: skip
    response: dict[str, Any] = {"description": f"{HTTPStatus(status).phrase}: {listed}",
                                "content": {PROBLEM_JSON: {"schema": schema}}}  # fmt: skip
    headers: dict[str, Any] = {
        name: {**HEADERS[ref], "required": True} for name, ref in STATUS_HEADERS.get(status, {}).items()
    }
    if status == 409 and "idempotency_key_in_use" in codes:
        headers["Retry-After"] = "RetryAfter"  # only with idempotency_key_in_use
    if headers:
        response["headers"] = headers
    return response


def _merge(codes: dict[int, tuple[str, ...]], table: Codes) -> None:
    for status, names in table.items():
        known = codes.get(status, ())
        codes[status] = known + tuple(name for name in names if name not in known)
