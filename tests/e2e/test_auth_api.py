"""Authentication, the active organization, and tenant isolation, over HTTP (issue 4).

JWT attacks: `alg: none`, HS/RS confusion, wrong key, expired, missing or odd
claims, issuer and audience. Then which organization a request acts in, and
that a member of organization A (even its Owner) can touch nothing of B.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from membership.organization import system_role_id
from service.settings import Settings
from tests.e2e.conftest import JWT_SECRET, ApiClient, User, problem

ISSUER = "https://id.ocore.example.com/"
AUDIENCE = "ocore-members"


# -- helpers ---------------------------------------------------------------------------------------------------
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(user: User, **overrides: Any) -> dict[str, Any]:
    claims = {"sub": user.user_id, "email": user.email, "name": user.name, "exp": int(time.time()) + 3600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def hand_made_jwt(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT built byte by byte, so no library refuses to forge it."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
    return f"{signing_input.decode()}.{b64url(sign(signing_input))}"


def rsa_pem_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def unauthorized(response: Any, code: str) -> dict[str, Any]:
    body = problem(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body


# -- the bearer token ------------------------------------------------------------------------------------------
def test_a_request_without_a_token_is_401_missing_token_with_a_bearer_challenge(api: ApiClient) -> None:
    response = api.get("/api/organizations")
    body = unauthorized(response, "missing_token")
    assert "Bearer" in body["detail"]


def test_a_non_bearer_authorization_header_is_401_missing_token(api: ApiClient) -> None:
    response = api.get("/api/organizations", headers={"Authorization": "Basic dXNlcjpwYXNzd29yZA=="})
    unauthorized(response, "missing_token")


def test_an_alg_none_token_is_401_invalid_token(api: ApiClient) -> None:
    user = api.user()
    token = hand_made_jwt({"alg": "none", "typ": "JWT"}, claims_for(user), lambda _: b"")
    response = api.post("/api/organizations", json={"name": "Unsigned"}, headers=bearer(token))
    unauthorized(response, "invalid_token")
    assert api.get("/api/organizations", api.user()).json == {"organizations": [], "total": 0, "nextCursor": None}


def test_a_hand_made_hs256_token_with_the_configured_secret_is_accepted(api: ApiClient) -> None:
    """Control for the forgeries below: the hand-made signer itself produces valid tokens."""
    token = hand_made_jwt(
        {"alg": "HS256", "typ": "JWT"},
        claims_for(api.user()),
        lambda data: hmac.new(JWT_SECRET.encode(), data, hashlib.sha256).digest(),
    )
    response = api.get("/api/organizations", headers=bearer(token))
    assert response.status_code == 200 and response.json == {"organizations": [], "total": 0, "nextCursor": None}


def test_a_token_signed_with_another_secret_is_401_invalid_token(api: ApiClient) -> None:
    user = api.user()
    token = api.token(user, key="another-secret-" + "z" * 32)
    unauthorized(api.get("/api/organizations", headers=bearer(token)), "invalid_token")


def test_a_token_with_a_tampered_payload_is_401_invalid_token(api: ApiClient) -> None:
    user, other = api.user(), api.user("victim")
    header, _, signature = api.token(user).split(".")
    forged = ".".join([header, b64url(json.dumps(claims_for(other)).encode()), signature])
    unauthorized(api.get("/api/organizations", headers=bearer(forged)), "invalid_token")


def test_an_expired_token_is_401_token_expired(api: ApiClient) -> None:
    user = api.user()
    token = api.token(user, exp=int(time.time()) - 3600)
    body = unauthorized(api.get("/api/organizations", headers=bearer(token)), "token_expired")
    assert "expired" in body["detail"]


@pytest.mark.parametrize(
    "claims",
    [{"sub": None}, {"exp": None}, {"sub": 12345}, {"sub": ""}, {"sub": ["a", "b"]}, {"exp": "tomorrow"}],
    ids=["missing-sub", "missing-exp", "numeric-sub", "empty-sub", "list-sub", "non-numeric-exp"],
)
def test_a_token_without_a_string_sub_and_an_exp_is_401_invalid_token(api: ApiClient, claims: dict[str, Any]) -> None:
    token = jwt.encode(claims_for(api.user(), **claims), JWT_SECRET, algorithm="HS256")
    unauthorized(api.get("/api/organizations", headers=bearer(token)), "invalid_token")


def test_a_valid_hs256_token_is_accepted(api: ApiClient) -> None:
    user = api.user()
    response = api.get("/api/organizations", headers=bearer(api.token(user)))
    assert response.status_code == 200 and response.json == {"organizations": [], "total": 0, "nextCursor": None}


class TestAnRs256Server:
    """MEMBERSHIP_JWT_PUBLIC_KEY_FILE set: only RS256 with the matching private key passes."""

    @pytest.fixture(scope="class")
    @classmethod
    def keys(cls) -> tuple[bytes, bytes]:
        return rsa_pem_pair()  # the server's key pair; making one takes a while, and the tests only read it

    @pytest.fixture
    def api_settings(
        self, store: str, settings_for: Callable[..., Settings], tmp_path: Path, keys: tuple[bytes, bytes]
    ) -> Settings:
        public_key_file = tmp_path / "jwt-public.pem"
        public_key_file.write_bytes(keys[1])
        return settings_for(store, MEMBERSHIP_JWT_PUBLIC_KEY_FILE=str(public_key_file))

    def test_a_proper_rs256_token_signed_with_the_private_key_is_accepted(
        self, api: ApiClient, keys: tuple[bytes, bytes]
    ) -> None:
        user = api.user("owner")
        token = jwt.encode(claims_for(user), keys[0], algorithm="RS256")
        created = api.post("/api/organizations", json={"name": "RSA Inc"}, headers=bearer(token))
        assert created.status_code == 201 and created.json["name"] == "RSA Inc"
        me = api.get("/api/me", org=created.json["id"], headers=bearer(token))
        assert me.status_code == 200
        assert (me.json["userId"], me.json["role"]["name"]) == (user.user_id, "Owner")

    def test_an_hs256_token_using_the_public_key_as_secret_is_401_invalid_token(
        self, api: ApiClient, keys: tuple[bytes, bytes]
    ) -> None:
        user = api.user()
        public_pem = keys[1]
        forged = hand_made_jwt(
            {"alg": "HS256", "typ": "JWT"},
            claims_for(user),
            lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
        )
        unauthorized(api.post("/api/organizations", json={"name": "Confused"}, headers=bearer(forged)), "invalid_token")
        assert api.get("/api/organizations", headers=bearer(jwt.encode(claims_for(user), keys[0], "RS256"))).json == {
            "organizations": [],
            "total": 0,
            "nextCursor": None,
        }

    def test_an_hs256_token_with_the_configured_style_secret_is_401_invalid_token(self, api: ApiClient) -> None:
        unauthorized(api.get("/api/organizations", headers=bearer(api.token(api.user()))), "invalid_token")

    def test_an_rs256_token_signed_with_another_private_key_is_401_invalid_token(self, api: ApiClient) -> None:
        other_private, _ = rsa_pem_pair()
        token = jwt.encode(claims_for(api.user()), other_private, algorithm="RS256")
        unauthorized(api.get("/api/organizations", headers=bearer(token)), "invalid_token")

    def test_an_alg_none_token_is_401_invalid_token(self, api: ApiClient) -> None:
        token = hand_made_jwt({"alg": "none"}, claims_for(api.user()), lambda _: b"")
        unauthorized(api.get("/api/organizations", headers=bearer(token)), "invalid_token")


class TestIssuerAndAudience:
    """MEMBERSHIP_JWT_ISSUER and MEMBERSHIP_JWT_AUDIENCE set: both claims must be present and match."""

    @pytest.fixture
    def api_settings(self, store: str, settings_for: Callable[..., Settings]) -> Settings:
        return settings_for(
            store, MEMBERSHIP_JWT_SECRET=JWT_SECRET, MEMBERSHIP_JWT_ISSUER=ISSUER, MEMBERSHIP_JWT_AUDIENCE=AUDIENCE
        )

    def test_the_right_issuer_and_audience_are_accepted(self, api: ApiClient) -> None:
        token = api.token(api.user(), iss=ISSUER, aud=AUDIENCE)
        response = api.get("/api/organizations", headers=bearer(token))
        assert response.status_code == 200 and response.json == {"organizations": [], "total": 0, "nextCursor": None}

    def test_an_audience_list_containing_ours_is_accepted(self, api: ApiClient) -> None:
        token = api.token(api.user(), iss=ISSUER, aud=["billing", AUDIENCE])
        assert api.get("/api/organizations", headers=bearer(token)).status_code == 200

    @pytest.mark.parametrize(
        "claims",
        [
            {"iss": "https://evil.example.com/", "aud": AUDIENCE},
            {"aud": AUDIENCE},
            {"iss": ISSUER, "aud": "another-service"},
            {"iss": ISSUER},
        ],
        ids=["wrong-iss", "missing-iss", "wrong-aud", "missing-aud"],
    )
    def test_a_wrong_or_missing_issuer_or_audience_is_401_invalid_token(
        self, api: ApiClient, claims: dict[str, str]
    ) -> None:
        token = api.token(api.user(), **claims)
        unauthorized(api.get("/api/organizations", headers=bearer(token)), "invalid_token")


# -- the active organization -----------------------------------------------------------------------------------
def test_the_organization_is_taken_from_the_x_organization_id_header(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    response = api.get("/api/me", owner, org)
    assert response.status_code == 200 and response.json["organizationId"] == org


def test_without_the_header_the_organization_is_taken_from_the_org_id_claim(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    response = api.get("/api/me", headers=bearer(api.token(owner, org_id=org)))
    assert response.status_code == 200 and response.json["organizationId"] == org
    assert response.json["role"]["name"] == "Owner"


def test_the_header_wins_over_the_org_id_claim(api: ApiClient) -> None:
    owner = api.user("owner")
    first, second = api.new_org(owner, "First"), api.new_org(owner, "Second")
    response = api.get("/api/me", org=first, headers=bearer(api.token(owner, org_id=second)))
    assert response.status_code == 200 and response.json["organizationId"] == first


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/members"), ("GET", "/api/me"), ("GET", "/api/roles")])
def test_an_organization_scoped_endpoint_without_header_or_claim_is_400_organization_required(
    api: ApiClient, method: str, path: str
) -> None:
    owner = api.user("owner")
    api.new_org(owner)
    problem(api.request(method, path, owner), 400, "organization_required")


def test_inviting_without_an_organization_is_400_organization_required(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    body = {"email": "someone@example.com", "roleId": api.role_id(org, "Viewer", owner)}
    problem(api.post("/api/members/invite", owner, json=body), 400, "organization_required")


@pytest.mark.parametrize("raw", ["acme", "12345", "0000-not-a-uuid", "' OR 1=1 --"])
def test_a_malformed_organization_id_header_is_400_invalid_organization_id(api: ApiClient, raw: str) -> None:
    owner = api.user("owner")
    api.new_org(owner)
    problem(api.get("/api/members", owner, raw), 400, "invalid_organization_id")


def test_a_malformed_org_id_claim_is_400_invalid_organization_id(api: ApiClient) -> None:
    owner = api.user("owner")
    api.new_org(owner)
    response = api.get("/api/members", headers=bearer(api.token(owner, org_id="acme")))
    problem(response, 400, "invalid_organization_id")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/members", None),
        ("GET", "/api/me", None),
        ("GET", "/api/roles", None),
        ("GET", "/api/audit-log", None),
        ("GET", "/api/invitations", None),
        ("POST", "/api/members/invite", {"email": "x@example.com", "roleId": "00000000-0000-0000-0000-000000000001"}),
        ("DELETE", "/api/members/00000000-0000-0000-0000-000000000001", None),
        ("POST", "/api/members/leave", None),
        ("POST", "/api/roles", {"name": "Spy", "permissionIds": []}),
    ],
)
def test_a_non_member_gets_the_same_403_not_a_member_for_an_existing_and_an_unknown_organization(
    api: ApiClient, method: str, path: str, body: Any
) -> None:
    owner, stranger = api.user("owner"), api.user("stranger")
    existing = api.new_org(owner)
    for_existing = problem(api.request(method, path, stranger, existing, json=body), 403, "not_a_member")
    for_unknown = problem(api.request(method, path, stranger, uuid4(), json=body), 403, "not_a_member")
    assert for_existing == for_unknown
    assert existing not in json_text(for_existing)


def test_a_removed_member_is_403_not_a_member_on_the_very_next_request(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    member = api.join(org, owner, "Admin", "admin")
    assert api.get("/api/members", member, org).status_code == 200
    assert api.delete(f"/api/members/{api.member_id(org, member, owner)}", owner, org).status_code == 200
    problem(api.get("/api/members", member, org), 403, "not_a_member")


def json_text(body: Any) -> str:
    return json.dumps(body)


# -- tenant isolation ------------------------------------------------------------------------------------------
class Tenants:
    """Organization A (the attacker is its Owner) and organization B, with one of everything.

    Made in-process through the application (the requests of A's owner are under test, not how the
    scene was made), then shown by the read models as after a command."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        app = api.services.organizations
        self.attacker, self.owner_b = api.user("owner-a"), api.user("owner-b")
        org_a = app.create_organization(self.attacker, "A").organization_id
        org_b = app.create_organization(self.owner_b, "B").organization_id
        self.org_a, self.org_b = str(org_a), str(org_b)
        viewer_a, viewer_b = system_role_id(org_a, "viewer"), system_role_id(org_b, "viewer")

        self.a_member = api.user("a-member")
        invited = app.invite_member(org_a, self.attacker, self.a_member.email, viewer_a)
        assert invited.secret is not None
        self.a_member_id = str(app.accept_invitation(self.a_member, invited.secret).id)
        self.a_viewer_role = str(viewer_a)

        self.b_viewer_role = str(viewer_b)
        # A member of B by link, so that no invitation e-mail of theirs is still on its way.
        b_developer = app.create_invite_link(org_b, self.owner_b, system_role_id(org_b, "developer"), 1, 1).secret
        assert b_developer is not None
        self.b_member_id = str(app.accept_invite_link(api.user("b-dev"), b_developer).id)
        with app.reading(org_b) as org:
            self.b_owner_member_id = str(org.member_by_user[self.owner_b.user_id])
        self.b_custom_role = str(app.create_role(org_b, self.owner_b, "B Ops", "", ["manage:servers"]).id)
        self.b_invitation = str(app.invite_member(org_b, self.owner_b, "pending.b@example.com", viewer_b).id)
        self.b_link = str(app.create_invite_link(org_b, self.owner_b, viewer_b, 5, 7).id)
        api.caught_up()
        self.wait_for_invitation_email(self.b_invitation)

    def wait_for_invitation_email(self, invitation_id: str) -> None:
        """The mailer records the e-mail of a pending invitation on its own schedule: let it, so B then stays still."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            events = self.api.get("/api/audit-log?limit=200", self.owner_b, self.org_b).json["events"]
            if any(e["type"].startswith("InvitationEmail") and e["target"]["id"] == invitation_id for e in events):
                return
            time.sleep(0.01)
        raise AssertionError(f"no InvitationEmail* event for invitation {invitation_id} within 15 s")

    def state_of_b(self) -> dict[str, Any]:
        """Everything B's owner can see of B."""
        get = self.api.get
        return {
            "members": get("/api/members?limit=200", self.owner_b, self.org_b).json,
            "invitations": get("/api/invitations?status=all", self.owner_b, self.org_b).json,
            "links": get("/api/invite-links", self.owner_b, self.org_b).json,
            "roles": get("/api/roles", self.owner_b, self.org_b).json,
            "audit": get("/api/audit-log?limit=200", self.owner_b, self.org_b).json,
        }


@pytest.fixture
def tenants(api: ApiClient) -> Tenants:
    return Tenants(api)


# (method, path, json body, expected code); ids are attributes of Tenants, filled in at run time.
CROSS_TENANT_REQUESTS = [
    ("DELETE", "/api/members/{b_member_id}", None, "member_not_found"),
    ("DELETE", "/api/members/{b_owner_member_id}", None, "member_not_found"),
    ("PUT", "/api/members/{b_member_id}/role", {"roleId": "{a_viewer_role}"}, "member_not_found"),
    ("PUT", "/api/members/{b_member_id}/role", {"roleId": "{b_custom_role}"}, "member_not_found"),
    ("PUT", "/api/members/{a_member_id}/role", {"roleId": "{b_custom_role}"}, "role_not_found"),
    ("PUT", "/api/members/{a_member_id}/role", {"roleId": "{b_viewer_role}"}, "role_not_found"),
    ("POST", "/api/members/{b_member_id}/transfer-ownership", None, "member_not_found"),
    ("DELETE", "/api/invitations/{b_invitation}", None, "invitation_not_found"),
    ("POST", "/api/invitations/{b_invitation}/resend", {}, "invitation_not_found"),
    ("DELETE", "/api/invite-links/{b_link}", None, "invite_link_not_found"),
    ("PUT", "/api/roles/{b_custom_role}", {"name": "Hijacked", "permissionIds": []}, "role_not_found"),
    ("DELETE", "/api/roles/{b_custom_role}", None, "role_not_found"),
    ("POST", "/api/members/invite", {"email": "spy@example.com", "roleId": "{b_custom_role}"}, "role_not_found"),
    ("POST", "/api/members/invite", {"email": "spy@example.com", "roleId": "{b_viewer_role}"}, "role_not_found"),
    ("POST", "/api/invite-links", {"roleId": "{b_viewer_role}", "maxUses": 1, "expiresInDays": 1}, "role_not_found"),
    ("GET", "/api/members?role={b_custom_role}", None, "role_not_found"),
]


def _fill(value: Any, tenants: Tenants) -> Any:
    if isinstance(value, str):
        return value.format(**vars(tenants))
    if isinstance(value, dict):
        return {k: _fill(v, tenants) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    CROSS_TENANT_REQUESTS,
    ids=[f"{m} {p} {b or ''}".replace("{", "").replace("}", "") for m, p, b, _ in CROSS_TENANT_REQUESTS],
)
def test_the_owner_of_a_gets_404_for_any_id_of_b_and_b_is_unchanged(
    tenants: Tenants, method: str, path: str, body: Any, code: str
) -> None:
    api = tenants.api
    before = tenants.state_of_b()
    response = api.request(method, _fill(path, tenants), tenants.attacker, tenants.org_a, json=_fill(body, tenants))
    problem(response, 404, code)
    assert tenants.state_of_b() == before


def test_the_owner_of_a_lists_nothing_of_b(tenants: Tenants) -> None:
    api, attacker, org_a = tenants.api, tenants.attacker, tenants.org_a
    members = api.get("/api/members?limit=200", attacker, org_a).json
    assert {m["userId"] for m in members["members"]} == {attacker.user_id, tenants.a_member.user_id}
    invitations = api.get("/api/invitations?status=all", attacker, org_a).json["invitations"]
    assert [i["email"] for i in invitations] == [tenants.a_member.email]
    assert api.get("/api/invite-links", attacker, org_a).json == {"inviteLinks": [], "total": 0, "nextCursor": None}
    roles = api.get("/api/roles", attacker, org_a).json["roles"]
    assert tenants.b_custom_role not in {r["id"] for r in roles} and "B Ops" not in {r["name"] for r in roles}
    audit = api.get("/api/audit-log?limit=200", attacker, org_a).json["events"]
    assert all(tenants.owner_b.user_id != e["actor"]["userId"] for e in audit)
    assert tenants.org_b not in json_text(audit)


@pytest.mark.parametrize("via", ["header", "claim"])
def test_the_owner_of_a_naming_b_as_the_organization_is_403_not_a_member_and_b_is_unchanged(
    tenants: Tenants, via: str
) -> None:
    api = tenants.api
    before = tenants.state_of_b()
    if via == "header":
        response = api.delete(f"/api/members/{tenants.b_member_id}", tenants.attacker, tenants.org_b)
    else:
        token = api.token(tenants.attacker, org_id=tenants.org_b)
        response = api.delete(f"/api/members/{tenants.b_member_id}", headers=bearer(token))
    problem(response, 403, "not_a_member")
    assert tenants.state_of_b() == before
