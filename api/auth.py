"""Who is calling, and in which organization.

Bearer JWTs are checked as `service.settings.TokenVerification` says, with the
configured keys and algorithms only (never the token's own `alg`), and must carry
`sub` and `exp`. Membership and role are read per request from the read models,
which every command has updated before answering: a role change or removal
applies to the very next request.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

import jwt
from flask import g, request

from api.context import services, utc_now
from api.errors import ApiError
from api.problems import IN_ORGANIZATION, MANAGER, answers
from membership import Actor, authorization
from membership.inputs import MAX_USER_ID_LENGTH
from membership.text import text_problem
from projections import members as members_reads
from projections.engine import parking
from projections.engine.store import OrganizationDegradedError
from projections.members import MemberRecord

if TYPE_CHECKING:  # settings are handed in by the service package (service.bootstrap)
    from service.settings import ProviderKeys, TokenVerification

log = logging.getLogger(__name__)
ACTIVITY_INTERVAL_S = 60.0
FETCH_TIMEOUT_S = 5.0  # the identity provider's discovery document and JWKS, read during a request
RETRY_FAILED_FETCH_S = 5.0  # (or the refresh interval, if shorter): a provider that is down is not asked per request
_last_touch: dict[tuple[str, str], float] = {}
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Caller:
    actor: Actor
    claims: dict[str, Any]


@dataclass(frozen=True)
class Membership:
    """The caller as a member of the active organization: what `@requires` hands a view."""

    organization_id: UUID
    actor: Actor
    member: MemberRecord


def current_caller() -> Caller:
    """The authenticated caller of this request (401 problem otherwise)."""
    caller: Caller | None = g.get("caller")
    if caller is None:
        caller = g.caller = _authenticate()
    return caller


def requires(
    permission: str | None = None,
) -> Callable[[Callable[Concatenate[Membership, P], R]], Callable[P, R]]:
    """The view runs for members of the active organization (holding `permission`, if given), and gets
    their `Membership` as its first argument; it also declares the 400/403/503 answers that follow.

    Put it right above the view, under flask-smorest's decorators: a request's arguments are checked
    (422) before its caller's membership (403), and those decorators' arguments come after `me`.
    Reads name their permission; a command usually asks only for membership, because its aggregate
    checks the permission by the same rule (membership.authorization), in order with its other checks.
    """

    def decorate(view: Callable[Concatenate[Membership, P], R]) -> Callable[P, R]:
        @functools.wraps(view)
        def as_member(*args: P.args, **kwargs: P.kwargs) -> R:
            return view(_current_membership(permission), *args, **kwargs)

        return answers(MANAGER if permission else IN_ORGANIZATION)(as_member)

    return decorate


def _current_membership(permission: str | None) -> Membership:
    """The active organization and the caller's membership in it, by the domain's rule (its refusals)."""
    organization_id = _organization_id()
    caller = current_caller()
    member = authorization.check_member(
        members_reads.member_for_user(services().read_db, organization_id, caller.actor.user_id)
    )
    if permission is not None:
        authorization.check_permission(member.role.permissions, permission)
    parked = parking.degradation(services().read_db, str(organization_id))
    if parked is not None:  # its read models are incomplete: neither reads nor commands can be trusted
        raise OrganizationDegradedError(parked)
    _touch(organization_id, member)
    g.user_id = caller.actor.user_id
    return Membership(organization_id, caller.actor, member)


def _authenticate() -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing_token", "Send a bearer token: Authorization: Bearer <JWT>.")
    try:
        claims = _decode(token.strip(), services().settings.token_verification())
    except jwt.ExpiredSignatureError:
        raise _unauthorized("token_expired", "The token has expired.") from None
    except jwt.InvalidTokenError as error:
        raise _unauthorized("invalid_token", f"The token is not valid: {error}.") from None
    except jwt.PyJWKClientConnectionError as error:
        log.warning("identity provider unavailable: %s", error)
        detail = "The identity provider's signing keys cannot be read right now; retry shortly."
        raise ApiError(503, "identity_provider_unavailable", detail, {"Retry-After": "5"}) from None
    g.user_id = _check_claims(claims)
    verified = claims.get("email_verified")  # the provider's word, when it gives one (membership's rule uses it)
    verified = verified if isinstance(verified, bool) else None
    actor = Actor(claims["sub"], claims.get("email", ""), claims.get("name", ""), verified)
    return Caller(actor, claims)


def _decode(token: str, verification: TokenVerification) -> dict[str, Any]:
    """The token's claims, checked with the provider's key it names, else with the configured key."""
    header = jwt.get_unverified_header(token)
    provider = verification.provider_for(header)
    if provider is not None and "kid" not in header:
        return _claims_by_any_provider_key(token, provider)
    if provider is not None:
        key = _provider_key(provider, header["kid"])
        return _claims(token, key, provider.algorithms, provider.issuer, provider.audience)
    if not verification.key:
        raise jwt.InvalidTokenError("it names no signing key (kid) of the identity provider")
    return _claims(token, verification.key, verification.algorithms, verification.issuer, verification.audience)


def _claims(
    token: str, key: Any, algorithms: tuple[str, ...], issuer: str | tuple[str, ...] | None, audience: str | None
) -> dict[str, Any]:
    return jwt.decode(
        token,
        key,
        algorithms=list(algorithms),
        issuer=issuer,
        audience=audience,
        options={"require": ["exp", "sub"], "verify_aud": audience is not None},
        leeway=30,
    )


def _claims_by_any_provider_key(token: str, provider: ProviderKeys) -> dict[str, Any]:
    """A token that names no key: each of the provider's signing keys is tried; when none verifies it, the keys
    are fetched again (a rotation), at most once per refresh interval, as for an unknown `kid`."""
    jwks = _provider_jwks(provider)
    for keys in (jwks.get_signing_keys, jwks.refreshed_signing_keys):
        for key in keys():
            with suppress(jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.InvalidKeyError):
                return _claims(token, key, provider.algorithms, provider.issuer, provider.audience)
    raise jwt.InvalidSignatureError("no signing key of the identity provider verifies it")


def _provider_key(provider: ProviderKeys, kid: object) -> jwt.PyJWK:
    try:
        return _provider_jwks(provider).get_signing_key(str(kid))
    except jwt.PyJWKClientConnectionError:
        raise
    except jwt.PyJWKClientError as error:  # no such key (not even after a refetch, or none allowed yet)
        raise jwt.InvalidTokenError(str(error)) from None


@functools.lru_cache(maxsize=8)
def _provider_jwks(provider: ProviderKeys) -> ProviderJwks:
    return ProviderJwks(provider)


class ProviderJwks(jwt.PyJWKClient):
    """PyJWKClient over the provider's JWKS: it keeps the key set for 5 minutes, and refetches it for a token
    naming an unknown key at most once per `refresh_s` after its last fetch (`cooldown_duration`), under a lock.

    Added here: the JWKS URL is read from the discovery document on the first fetch, not at start-up; every
    failure to read either is one PyJWKClientConnectionError (a 503), and is not retried for a few seconds.
    """

    def __init__(self, provider: ProviderKeys) -> None:
        uri = provider.jwks_url or provider.discovery_url or ""
        super().__init__(uri, timeout=FETCH_TIMEOUT_S, cooldown_duration=provider.refresh_s)
        self.discover = provider.jwks_url is None  # self.uri is the discovery document's, until read
        self.retry_s = min(provider.refresh_s, RETRY_FAILED_FETCH_S)
        self.failed_at: float | None = None

    def refreshed_signing_keys(self) -> list[jwt.PyJWK]:
        """The signing keys fetched anew, unless the last fetch is more recent than the refresh interval."""
        with self._client_lock:
            last = self._last_successful_fetch
            if last is not None and time.monotonic() - last < self.cooldown_duration:
                return []
            keys = self.get_signing_keys(refresh=True)
            self._last_successful_fetch = time.monotonic()
            return keys

    def fetch_data(self) -> Any:
        if self.failed_at is not None and time.monotonic() - self.failed_at < self.retry_s:
            raise jwt.PyJWKClientConnectionError(f"reading {self.uri} failed less than {self.retry_s:g} s ago")
        try:
            if self.discover:
                self.uri, self.discover = _jwks_uri(self.uri), False
            return super().fetch_data()
        except (jwt.PyJWTError, OSError, ValueError, http.client.HTTPException) as error:
            self.failed_at = time.monotonic()
            raise jwt.PyJWKClientConnectionError(f"cannot read {self.uri}: {error}") from error


def _jwks_uri(discovery_url: str) -> str:
    """The `jwks_uri` of an OpenID Connect discovery document."""
    with urllib.request.urlopen(discovery_url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 (http(s), checked)
        document = json.load(response)
    jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
        raise ValueError("the discovery document names no http(s) jwks_uri")
    return jwks_uri


def current_caller_with_email() -> Actor:
    """The caller, who must have an e-mail: to own an organization or to join one."""
    actor = current_caller().actor
    if not actor.email:
        raise ApiError(403, "email_claim_required", "Your token has no email claim; this needs a verified e-mail.")
    return actor


def _check_claims(claims: dict[str, Any]) -> str:
    """The identity claims are stored in events: strings obeying the stored-text rule, else 401."""
    sub, email, name = claims["sub"], claims.get("email", ""), claims.get("name", "")
    if not all(isinstance(value, str) for value in (sub, email, name)) or not sub:
        raise _unauthorized("invalid_token", "The token's sub, email and name claims must be strings.")
    if len(sub) > MAX_USER_ID_LENGTH or len(email) > 254 or len(name) > 1000:
        raise _unauthorized("invalid_token_claims", "The token's sub, email or name claim is too long.")
    for claim, value in (("sub", sub), ("email", email), ("name", name)):
        problem = text_problem(value)
        if problem is not None:
            raise _unauthorized("invalid_token_claims", f"The token's {claim} claim contains {problem}.")
    return str(sub)


def _organization_id() -> UUID:
    """The organization the path names (`/api/organizations/{id}`), else the X-Organization-Id header, else the
    token's `org_id` claim."""
    in_path = (request.view_args or {}).get("organization_id")
    if isinstance(in_path, UUID):
        return in_path
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
        members_reads.touch_activity(services().read_db, organization_id, member.user_id, utc_now())
