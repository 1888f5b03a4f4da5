"""Who is calling, and in which organization.

Bearer JWTs are checked with the configured key and algorithms only (never
the token's own `alg`), and must carry `sub` and `exp`. Membership and role
are read per request from the read models, which every command has updated
before answering: a role change or removal applies to the very next request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import jwt
from flask import g, request

from api.context import services, utc_now
from api.errors import ApiError
from membership import Actor
from membership.permissions import MANAGE_MEMBERS
from membership.settings import TokenVerification
from projections import queries
from projections.records import MemberRecord

ACTIVITY_INTERVAL_S = 60.0
_last_touch: dict[tuple[str, str], float] = {}


@dataclass(frozen=True)
class Caller:
    actor: Actor
    claims: dict[str, Any]


def current_caller() -> Caller:
    """The authenticated caller of this request (401 problem otherwise)."""
    caller: Caller | None = g.get("caller")
    if caller is None:
        caller = g.caller = _authenticate()
    return caller


def current_member(permission: str | None = None) -> tuple[UUID, MemberRecord]:
    """The active organization and the caller's membership in it, optionally with a permission."""
    organization_id = _organization_id()
    caller = current_caller()
    member = queries.member_for_user(services().read_db, organization_id, caller.actor.user_id)
    if member is None:
        raise ApiError(403, "not_a_member", "You are not a member of this organization.")
    if permission is not None and permission not in member.role.permissions:
        detail = f"This action requires the {permission} permission."
        raise ApiError(403, "missing_permission", detail, permission=permission)
    _touch(organization_id, member)
    g.user_id = caller.actor.user_id
    return organization_id, member


def member_manager() -> tuple[UUID, MemberRecord]:
    return current_member(MANAGE_MEMBERS)


def _authenticate() -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing_token", "Send a bearer token: Authorization: Bearer <JWT>.")
    verification: TokenVerification = services().settings.token_verification()
    try:
        claims = jwt.decode(
            token.strip(),
            verification.key,
            algorithms=list(verification.algorithms),
            issuer=verification.issuer,
            audience=verification.audience,
            options={"require": ["exp", "sub"], "verify_aud": verification.audience is not None},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("token_expired", "The token has expired.") from None
    except jwt.InvalidTokenError as error:
        raise _unauthorized("invalid_token", f"The token is not valid: {error}.") from None
    email, name = claims.get("email", ""), claims.get("name", "")
    if (
        not isinstance(claims["sub"], str)
        or not claims["sub"]
        or not isinstance(email, str)
        or not isinstance(name, str)
    ):
        raise _unauthorized("invalid_token", "The token's sub, email and name claims must be strings.")
    g.user_id = claims["sub"]
    return Caller(Actor(claims["sub"], email, name), claims)


def _organization_id() -> UUID:
    raw = request.headers.get("X-Organization-Id") or current_caller().claims.get("org_id")
    if not raw:
        raise ApiError(400, "organization_required", "Name the organization: send an X-Organization-Id header.")
    try:
        return UUID(str(raw))
    except ValueError:
        raise ApiError(400, "invalid_organization_id", f"{raw!r} is not an organization id (a UUID).") from None


def _unauthorized(code: str, detail: str) -> ApiError:
    challenge = f'Bearer realm="membership", error="invalid_token", error_description="{detail}"'
    if code == "missing_token":
        challenge = 'Bearer realm="membership"'
    return ApiError(401, code, detail, {"WWW-Authenticate": challenge})


def _touch(organization_id: UUID, member: MemberRecord) -> None:
    """lastActiveAt, written at most once a minute per member and process (telemetry, not an event)."""
    key = (str(organization_id), member.user_id)
    now = time.monotonic()
    if now - _last_touch.get(key, -ACTIVITY_INTERVAL_S) >= ACTIVITY_INTERVAL_S:
        _last_touch[key] = now
        queries.touch_activity(services().read_db, organization_id, member.user_id, utc_now())
