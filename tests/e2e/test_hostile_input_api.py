"""Whatever a client sends, the answer is a 4xx problem, never a 5xx, and no read model stops.

Every string field and query parameter is tried with NUL, other control
characters, CR/LF, bidi overrides, lone surrogates and 64 KiB strings; bodies
nested 10,000 deep; token claims carrying the same. Afterwards the read
models are all caught up, with nothing parked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.engine import parking
from tests.e2e.conftest import BOTH_STORES, JWT_SECRET, ApiClient, problem

HOSTILE = {
    "nul": "A\x00B",
    "bell": "A\x07B",
    "newline": "A\nB",
    "crlf": "x@example.com\r\nBcc: everyone@example.com",
    "c1": "A\x85B",
    "bidi-override": "A\u202eB",
    "bidi-isolate": "A\u2066B",
    "lone-surrogate": "x\udfffy",
}


def assert_read_models_healthy(api: ApiClient) -> None:
    health = api.get("/api/health")
    assert health.status_code == 200, health.json
    assert all(p["lag"] == 0 and not p["stalled"] for p in health.json["projections"].values())
    assert parking.active(api.services.read_db) == []


@pytest.fixture
def scene(api: ApiClient) -> dict[str, Any]:
    owner = api.user("owner")
    org = api.new_org(owner)
    role = api.post("/api/roles", owner, org, json={"name": "Custom", "permissionIds": ["view:projects"]}).json["id"]
    return {"owner": owner, "org": org, "viewer": api.role_id(org, "Viewer", owner), "role": role}


def bodies(scene: dict[str, Any], text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every request body with a string field, with `text` in that field."""
    return [
        ("POST", "/api/organizations", {"name": text}),
        ("POST", "/api/members/invite", {"email": text, "roleId": scene["viewer"]}),
        ("POST", "/api/roles", {"name": text, "permissionIds": []}),
        ("POST", "/api/roles", {"name": "Fine", "description": text, "permissionIds": []}),
        ("POST", "/api/roles", {"name": "Fine", "permissionIds": [text]}),
        ("PUT", f"/api/roles/{scene['role']}", {"name": text}),
        ("PUT", f"/api/roles/{scene['role']}", {"description": text}),
        ("POST", "/api/auth/accept-invite", {"token": text}),
        ("POST", "/api/auth/accept-invite-link", {"code": text}),
    ]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_strings_in_any_body_field_are_refused_with_a_problem_naming_the_field(
    api: ApiClient, scene: dict[str, Any], kind: str
) -> None:
    for method, path, body in bodies(scene, HOSTILE[kind]):
        response = api.request(method, path, scene["owner"], scene["org"], json=body)
        assert response.status_code in (404, 422), (method, path, body, response.json)
        if response.status_code == 422:
            body_problem = problem(response, 422, response.json["code"])
            assert body_problem["code"] in ("validation_failed", "invalid_value")
            assert set(body_problem["errors"]) <= set(body), body_problem
    assert_read_models_healthy(api)


@pytest.mark.parametrize("kind", ["nul", "bell", "c1", "bidi-override"])
@pytest.mark.parametrize("parameter", ["/api/members?q=", "/api/members?role=", "/api/audit-log?actor=",
                                       "/api/audit-log?type=", "/api/members?cursor="])  # fmt: skip
def test_hostile_query_parameters_are_refused(api: ApiClient, scene: dict[str, Any], parameter: str, kind: str) -> None:
    response = api.get(parameter + quote(HOSTILE[kind]), scene["owner"], scene["org"])
    body = problem(response, 422, "validation_failed")
    assert parameter.rpartition("?")[2].rstrip("=") in body["errors"]


@BOTH_STORES  # what the store keeps (PostgreSQL refuses NUL in text; SQLite does not)
def test_a_64_kib_string_is_refused_not_stored(api: ApiClient, scene: dict[str, Any]) -> None:
    for method, path, body in bodies(scene, "x" * 65536):
        response = api.request(method, path, scene["owner"], scene["org"], json=body)
        assert response.status_code in (413, 422), (path, response.json)
        problem(response, response.status_code, response.json["code"])
    assert_read_models_healthy(api)


def test_a_body_nested_ten_thousand_deep_is_malformed_json(api: ApiClient, scene: dict[str, Any]) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    response = api.post("/api/organizations", scene["owner"], data=deep, headers={"Content-Type": "application/json"})
    problem(response, 400, "malformed_json")


@pytest.mark.parametrize("claim", ["sub", "email", "name"])
@pytest.mark.parametrize("kind", ["nul", "newline", "crlf", "bidi-override", "c1"])
def test_token_claims_with_control_characters_are_refused_at_authentication(
    api: ApiClient, claim: str, kind: str
) -> None:
    user = api.user()
    token = api.token(user, **{claim: HOSTILE[kind]})
    response = api.post("/api/organizations", json={"name": "Nice"}, headers={"Authorization": f"Bearer {token}"})
    body = problem(response, 401, "invalid_token_claims")
    assert claim in body["detail"] and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_without_an_email_cannot_own_or_join_an_organization(api: ApiClient, scene: dict[str, Any]) -> None:
    nobody = api.user()
    headers = {"Authorization": f"Bearer {api.token(nobody, email=None)}"}
    problem(api.post("/api/organizations", json={"name": "Ghost"}, headers=headers), 403, "email_claim_required")
    link = api.post("/api/invite-links", scene["owner"], scene["org"], json={"roleId": scene["viewer"]}).json
    refused = api.post("/api/auth/accept-invite-link", json={"code": link["code"]}, headers=headers)
    problem(refused, 403, "email_claim_required")


def test_a_forged_request_id_is_not_echoed(api: ApiClient, scene: dict[str, Any]) -> None:
    response = api.get("/api/roles", scene["owner"], scene["org"], headers={"X-Request-Id": "evil\x01id"})
    assert response.status_code == 200 and response.headers["X-Request-Id"] != "evil\x01id"


printable_or_not = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs", "Cc", "Cf"]), min_size=1, max_size=40
)


@BOTH_STORES  # what the store keeps (PostgreSQL refuses NUL in text; SQLite does not)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=printable_or_not, description=printable_or_not)
def test_any_role_text_is_either_stored_exactly_as_readable_text_or_refused(
    api: ApiClient, scene: dict[str, Any], name: str, description: str
) -> None:
    response = api.post(
        "/api/roles", scene["owner"], scene["org"], json={"name": name, "description": description, "permissionIds": []}
    )
    assert response.status_code in (201, 409, 422), response.json
    has_control = any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                      for c in name + description)  # fmt: skip
    if response.status_code == 201:
        assert not has_control
        assert response.json["name"] == " ".join(name.split()) and response.json["description"] == description.strip()
        assert api.delete(f"/api/roles/{response.json['id']}", scene["owner"], scene["org"]).status_code == 200
    elif has_control:
        assert response.status_code == 422


def test_tokens_signed_with_the_right_key_but_no_sub_string_are_refused(api: ApiClient) -> None:
    import jwt

    token = jwt.encode({"sub": 12, "exp": 2**31}, JWT_SECRET, algorithm="HS256")
    problem(api.get("/api/organizations", headers={"Authorization": f"Bearer {token}"}), 401, "invalid_token")
