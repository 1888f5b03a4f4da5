"""The baseline of `benchmarks.http`: a plain Flask + psycopg CRUD service doing the same checks and writes.

    CRUD_DATABASE_URL=postgresql://... CRUD_JWT_SECRET=... \\
        .venv/bin/python -m gunicorn -w 2 'benchmarks.crud_app:create_app()'

Four endpoints, with the real API's paths, headers (`Authorization: Bearer`, `X-Organization-Id`) and
body shapes: POST /api/members/invite, PUT /api/members/{id}/role, DELETE /api/members/{id},
GET /api/members (keyset pages, oldest first, with the total). Each request verifies the HS256 JWT
(PyJWT, `exp` and `sub` required), reads the caller's membership and role, checks the permission by
the service's rule (a manager holds every permission involved, or is the Owner), and writes the row
and an audit row in one transaction. An invite also checks that the e-mail is no member's and has no
pending invitation, and the pending-invitation cap (CRUD_MAX_PENDING_INVITATIONS) on a counter in the
organization's row, which it locks: invites to one organization are serialised, as the service's are.

Its tables live in their own schema (`crud_bench`); `create_schema`, `seed_organization` and
`add_members` fill them for the benchmark. It imports nothing of the service.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import jwt
import psycopg
from flask import Flask, Response, current_app, g, request
from psycopg_pool import ConnectionPool

SCHEMA = "crud_bench"
MANAGE_MEMBERS = "manage:members"
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
PAGE_MAX = 200
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.organizations (
    id UUID PRIMARY KEY, name TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    pending_invitations INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS {SCHEMA}.roles (
    id UUID PRIMARY KEY, organization_id UUID NOT NULL REFERENCES {SCHEMA}.organizations,
    key TEXT, name TEXT NOT NULL, permissions TEXT[] NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.members (
    id UUID PRIMARY KEY, organization_id UUID NOT NULL REFERENCES {SCHEMA}.organizations,
    user_id TEXT NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL, role_id UUID NOT NULL REFERENCES {SCHEMA}.roles,
    joined_at TIMESTAMPTZ NOT NULL, last_active_at TIMESTAMPTZ,
    UNIQUE (organization_id, user_id), UNIQUE (organization_id, email));
CREATE INDEX IF NOT EXISTS members_by_org_joined ON {SCHEMA}.members (organization_id, joined_at, id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.invitations (
    id UUID PRIMARY KEY, organization_id UUID NOT NULL REFERENCES {SCHEMA}.organizations,
    email TEXT NOT NULL, role_id UUID NOT NULL, status TEXT NOT NULL, invited_by TEXT NOT NULL,
    inviter_email TEXT NOT NULL, token_hash TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL, replaces UUID);
CREATE UNIQUE INDEX IF NOT EXISTS invitations_pending ON {SCHEMA}.invitations (organization_id, email)
    WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS {SCHEMA}.audit_log (
    id BIGSERIAL PRIMARY KEY, organization_id UUID NOT NULL, actor_id TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, details JSONB NOT NULL, at TIMESTAMPTZ NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_org ON {SCHEMA}.audit_log (organization_id, id);
"""
_CALLER = (
    f"SELECT m.id, r.key, r.permissions FROM {SCHEMA}.members m JOIN {SCHEMA}.roles r ON r.id = m.role_id"
    " WHERE m.organization_id = %s AND m.user_id = %s"
)
_MEMBER = (
    f"SELECT m.id, m.user_id, m.email, m.name, m.joined_at, m.last_active_at, r.id, r.name, r.permissions, r.key"
    f" FROM {SCHEMA}.members m JOIN {SCHEMA}.roles r ON r.id = m.role_id"
)


class Problem(Exception):
    """An RFC 9457 answer, as the service gives it."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class Caller:
    user_id: str
    email: str
    member_id: UUID
    is_owner: bool
    permissions: frozenset[str]

    def may_grant(self, permissions: Iterable[str]) -> bool:
        return self.is_owner or self.permissions.issuperset(permissions)


# -- the app ---------------------------------------------------------------------------------------------------------
def create_app() -> Flask:
    """The WSGI app; gunicorn calls this in each worker, so every worker has its own pool."""
    url, secret = os.environ["CRUD_DATABASE_URL"], os.environ["CRUD_JWT_SECRET"]
    size = int(os.environ.get("CRUD_POOL_SIZE", "1"))
    app = Flask(__name__)
    app.extensions["crud"] = {
        "pool": ConnectionPool(url, min_size=size, max_size=size, open=True, name="crud"),
        "secret": secret,
        "max_pending": int(os.environ.get("CRUD_MAX_PENDING_INVITATIONS", "1000")),
    }
    app.add_url_rule("/api/health", view_func=health)
    app.add_url_rule("/api/members", view_func=list_members, methods=["GET"])
    app.add_url_rule("/api/members/invite", view_func=invite_member, methods=["POST"])
    app.add_url_rule("/api/members/<uuid:member_id>/role", view_func=change_role, methods=["PUT"])
    app.add_url_rule("/api/members/<uuid:member_id>", view_func=remove_member, methods=["DELETE"])
    app.register_error_handler(Problem, _problem)
    return app


def _config() -> dict[str, Any]:
    return current_app.extensions["crud"]  # type: ignore[no-any-return]


def _problem(problem: Problem) -> Response:
    body = {"type": "about:blank", "title": problem.code, "status": problem.status, "detail": problem.detail}
    response = _json({**body, "code": problem.code}, problem.status, "application/problem+json")
    if problem.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="membership"'
    return response


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> Response:
    return Response(json.dumps(body), status, content_type=content_type)


def health() -> Response:
    with _config()["pool"].connection() as conn:
        conn.execute("SELECT 1")
    return _json({"status": "ok"})


# -- who is calling ----------------------------------------------------------------------------------------------------
def _claims() -> dict[str, Any]:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "missing_token", "Send a bearer token.")
    try:
        return jwt.decode(  # type: ignore[no-any-return]
            token.strip(), _config()["secret"], algorithms=["HS256"], options={"require": ["exp", "sub"]}, leeway=30
        )
    except jwt.InvalidTokenError as error:
        raise Problem(401, "invalid_token", f"The token is not valid: {error}.") from None


def _organization_id() -> UUID:
    try:
        return UUID(request.headers.get("X-Organization-Id", ""))
    except ValueError:
        raise Problem(400, "organization_required", "Send an X-Organization-Id header.") from None


def _caller(cur: psycopg.Cursor[Any], organization_id: UUID, permission: str | None) -> Caller:
    claims = _claims()
    row = cur.execute(_CALLER, (organization_id, claims["sub"])).fetchone()
    if row is None:
        raise Problem(403, "not_a_member", "You are not a member of this organization.")
    caller = Caller(claims["sub"], claims.get("email", ""), row[0], row[1] == "owner", frozenset(row[2]))
    if permission is not None and permission not in caller.permissions:
        raise Problem(403, "missing_permission", f"You need the {permission} permission.")
    g.user_id = caller.user_id
    return caller


def _assignable_role(cur: psycopg.Cursor[Any], organization_id: UUID, caller: Caller, role_id: UUID) -> Sequence[Any]:
    role = cur.execute(
        f"SELECT id, name, permissions, key FROM {SCHEMA}.roles WHERE id = %s AND organization_id = %s",
        (role_id, organization_id),
    ).fetchone()
    if role is None:
        raise Problem(404, "role_not_found", "No such role in this organization.")
    if role[3] == "owner":
        raise Problem(409, "owner_role_not_assignable", "The Owner role is only given by transferring ownership.")
    if not caller.may_grant(role[2]):
        raise Problem(403, "privilege_escalation", "You cannot grant a role with permissions you lack.")
    return role


def _managed_member(cur: psycopg.Cursor[Any], organization_id: UUID, caller: Caller, member_id: UUID) -> Sequence[Any]:
    """The member, row-locked for the change, whom the caller may manage."""
    member = cur.execute(
        f"{_MEMBER} WHERE m.organization_id = %s AND m.id = %s FOR UPDATE OF m", (organization_id, member_id)
    ).fetchone()
    if member is None:
        raise Problem(404, "member_not_found", "No such member.")
    if member[9] == "owner":
        raise Problem(409, "owner_cannot_change", "The Owner's membership changes only by transfer.")
    if not caller.may_grant(member[8]):
        raise Problem(403, "privilege_escalation", "You cannot manage a member who has permissions you lack.")
    return member


def _audit(
    cur: psycopg.Cursor[Any], organization_id: UUID, caller: Caller, action: str, subject: Any, **details: Any
) -> None:
    cur.execute(
        f"INSERT INTO {SCHEMA}.audit_log (organization_id, actor_id, action, subject, details, at)"
        " VALUES (%s, %s, %s, %s, %s, now())",
        (organization_id, caller.user_id, action, str(subject), json.dumps(details)),
    )


# -- the four endpoints ------------------------------------------------------------------------------------------------
def invite_member() -> Response:
    organization_id = _organization_id()
    email, role_id, days = _invite_body()
    with _config()["pool"].connection() as conn, conn.cursor() as cur:
        caller = _caller(cur, organization_id, MANAGE_MEMBERS)
        role = _assignable_role(cur, organization_id, caller, role_id)
        pending = cur.execute(
            f"SELECT pending_invitations FROM {SCHEMA}.organizations WHERE id = %s FOR UPDATE", (organization_id,)
        ).fetchone()
        assert pending is not None  # the caller is a member of it
        if cur.execute(f"SELECT 1 FROM {SCHEMA}.members WHERE organization_id = %s AND email = %s",
                       (organization_id, email)).fetchone():  # fmt: skip
            raise Problem(409, "already_member", "Already a member of this organization.")
        now = datetime.now(UTC)
        replaced = cur.execute(
            f"SELECT id, expires_at FROM {SCHEMA}.invitations WHERE organization_id = %s AND email = %s"
            " AND status = 'pending'", (organization_id, email),
        ).fetchone()  # fmt: skip
        if replaced is not None and replaced[1] > now:
            raise Problem(409, "already_invited", f"{email} already has a pending invitation.")
        if pending[0] - (replaced is not None) >= _config()["max_pending"]:
            raise Problem(409, "too_many_pending_invitations", "Too many pending invitations.")
        if replaced is not None:
            cur.execute(f"UPDATE {SCHEMA}.invitations SET status = 'replaced' WHERE id = %s", (replaced[0],))
        invitation_id, expires_at = uuid4(), now + timedelta(days=days)
        token_hash = hashlib.sha256(secrets.token_bytes(32)).hexdigest()  # the e-mail's link would carry the token
        cur.execute(
            f"INSERT INTO {SCHEMA}.invitations (id, organization_id, email, role_id, status, invited_by, inviter_email,"
            " token_hash, created_at, expires_at, replaces) VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s)",
            (invitation_id, organization_id, email, role_id, caller.user_id, caller.email, token_hash, now, expires_at,
             replaced[0] if replaced else None),
        )  # fmt: skip
        cur.execute(
            f"UPDATE {SCHEMA}.organizations SET pending_invitations = %s WHERE id = %s",
            (pending[0] + 1 - (replaced is not None), organization_id),
        )
        _audit(cur, organization_id, caller, "member.invited", invitation_id, email=email, role_id=str(role_id))
    body = {
        "id": str(invitation_id), "email": email, "status": "pending", "role": _role(role[0], role[1], role[2]),
        "invitedBy": {"userId": caller.user_id, "email": caller.email}, "expiresAt": expires_at.isoformat(),
        "createdAt": now.isoformat(), "resentAt": None, "resendCount": 0, "emailStatus": "queued",
    }  # fmt: skip
    return _json(body, 201)


def _invite_body() -> tuple[str, UUID, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) - {"email", "roleId", "expiresInDays"}:
        raise Problem(422, "validation_failed", "Send email, roleId and optionally expiresInDays.")
    email, days = str(body.get("email", "")).strip().lower(), body.get("expiresInDays", 7)
    if len(email) > 254 or not EMAIL.fullmatch(email):
        raise Problem(422, "validation_failed", "email is not a valid e-mail address.")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 30:
        raise Problem(422, "validation_failed", "expiresInDays must be a whole number from 1 to 30.")
    return email, _role_id(body), days


def _role_id(body: Any) -> UUID:
    try:
        return UUID(str(body["roleId"]))
    except (KeyError, TypeError, ValueError):
        raise Problem(422, "validation_failed", "roleId must be a role id.") from None


def change_role(member_id: UUID) -> Response:
    organization_id = _organization_id()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"roleId"}:
        raise Problem(422, "validation_failed", "Send roleId.")
    role_id = _role_id(body)
    with _config()["pool"].connection() as conn, conn.cursor() as cur:
        caller = _caller(cur, organization_id, MANAGE_MEMBERS)
        member = _managed_member(cur, organization_id, caller, member_id)
        role = _assignable_role(cur, organization_id, caller, role_id)
        if member[6] != role_id:  # the same role again records nothing, as in the service
            cur.execute(f"UPDATE {SCHEMA}.members SET role_id = %s WHERE id = %s", (role_id, member_id))
            _audit(cur, organization_id, caller, "member.role_changed", member_id, old=str(member[6]), new=str(role_id))
    changed = _member_json([*member[:6], role[0], role[1], role[2]])
    return _json({"message": "The member's role was changed.", "member": changed})


def remove_member(member_id: UUID) -> Response:
    organization_id = _organization_id()
    with _config()["pool"].connection() as conn, conn.cursor() as cur:
        caller = _caller(cur, organization_id, MANAGE_MEMBERS)
        member = _managed_member(cur, organization_id, caller, member_id)
        if member[0] == caller.member_id:
            raise Problem(409, "cannot_remove_yourself", "You cannot remove yourself; leave instead.")
        cur.execute(f"DELETE FROM {SCHEMA}.members WHERE id = %s", (member_id,))
        _audit(cur, organization_id, caller, "member.removed", member_id, email=member[2])
    return _json({"message": "The member was removed."})


def list_members() -> Response:
    organization_id = _organization_id()
    try:
        limit = int(request.args.get("limit", "50"))
        after = _decode_cursor(request.args["cursor"]) if "cursor" in request.args else None
    except (ValueError, KeyError, TypeError):
        raise Problem(400, "invalid_cursor", "The cursor or limit is not valid.") from None
    if not 1 <= limit <= PAGE_MAX:
        raise Problem(422, "validation_failed", f"limit must be from 1 to {PAGE_MAX}.")
    keyset, params = ("", [organization_id]) if after is None else (
        " AND m.joined_at >= %s AND (m.joined_at, m.id) > (%s, %s)", [organization_id, after[0], *after])  # fmt: skip
    with _config()["pool"].connection() as conn, conn.cursor() as cur:
        _caller(cur, organization_id, None)
        total = cur.execute(f"SELECT COUNT(*) FROM {SCHEMA}.members WHERE organization_id = %s", (organization_id,))
        count = total.fetchone()[0]  # type: ignore[index]
        rows = cur.execute(
            f"{_MEMBER} WHERE m.organization_id = %s{keyset} ORDER BY m.joined_at, m.id LIMIT %s", (*params, limit + 1)
        ).fetchall()
    members = [_member_json(row) for row in rows[:limit]]
    cursor = _encode_cursor(rows[limit - 1][4], rows[limit - 1][0]) if len(rows) > limit else None
    return _json({"members": members, "total": count, "nextCursor": cursor})


def _member_json(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": str(row[0]), "userId": row[1], "email": row[2], "name": row[3], "role": _role(row[6], row[7], row[8]),
        "joinedAt": row[4].isoformat(), "lastActiveAt": row[5].isoformat() if row[5] else None,
    }  # fmt: skip


def _role(role_id: UUID, name: str, permissions: Sequence[str]) -> dict[str, Any]:
    return {"id": str(role_id), "name": name, "permissions": sorted(permissions)}


def _encode_cursor(joined_at: datetime, member_id: UUID) -> str:
    return base64.urlsafe_b64encode(json.dumps([joined_at.isoformat(), str(member_id)]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    joined_at, member_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return datetime.fromisoformat(joined_at), UUID(member_id)


# -- the benchmark's set-up ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoleRow:
    id: UUID
    key: str | None
    name: str
    permissions: frozenset[str]


@dataclass(frozen=True)
class MemberRow:
    id: UUID
    user_id: str
    email: str
    name: str
    role_id: UUID
    joined_at: datetime


def create_schema(conn: psycopg.Connection[Any]) -> None:
    """Drop and create the baseline's tables (in their own schema)."""
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.execute(DDL)


def seed_organization(
    conn: psycopg.Connection[Any], organization_id: UUID, name: str, created_at: datetime,
    roles: Iterable[RoleRow], members: Iterable[MemberRow],
) -> None:  # fmt: skip
    """One organization with its roles and members, as given (the benchmark copies the service's)."""
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {SCHEMA}.organizations (id, name, created_at) VALUES (%s, %s, %s)",
            (organization_id, name, created_at),
        )
        cur.executemany(
            f"INSERT INTO {SCHEMA}.roles (id, organization_id, key, name, permissions) VALUES (%s, %s, %s, %s, %s)",
            [(r.id, organization_id, r.key, r.name, sorted(r.permissions)) for r in roles],
        )
        add_members(conn, organization_id, members)


def add_members(conn: psycopg.Connection[Any], organization_id: UUID, members: Iterable[MemberRow]) -> None:
    columns = "id, organization_id, user_id, email, name, role_id, joined_at"
    with conn.cursor() as cur, cur.copy(f"COPY {SCHEMA}.members ({columns}) FROM STDIN") as copy:
        for m in members:
            copy.write_row((m.id, organization_id, m.user_id, m.email, m.name, m.role_id, m.joined_at))


def member_states(conn: psycopg.Connection[Any], organization_id: UUID) -> dict[UUID, tuple[str, UUID]]:
    """Every member's user id and role id, by member id."""
    rows = conn.execute(
        f"SELECT id, user_id, role_id FROM {SCHEMA}.members WHERE organization_id = %s", (organization_id,)
    ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}
