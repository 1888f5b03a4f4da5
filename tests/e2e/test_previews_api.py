"""`GET /api/invitations/preview` and `/api/invite-links/preview`: what a token or code offers, without a token
of the caller's; failed look-ups limited per client address, together with the accept pages'."""

from __future__ import annotations

from urllib.parse import quote

from tests.e2e.conftest import ApiClient, problem


def invitation_preview(api: ApiClient, token: str, address: str = "198.51.100.1") -> object:
    return api.get(f"/api/invitations/preview?token={quote(token)}", environ_base={"REMOTE_ADDR": address})


def test_an_invitation_preview_tells_the_facts_without_a_token(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Preview Co")
    invited = api.post("/api/members/invite", owner, org, json={"email": "nora@example.com",
                       "roleId": api.role_id(org, "Developer", owner), "expiresInDays": 3})  # fmt: skip
    token = api.invitation_token(org, invited.json["id"])
    answer = invitation_preview(api, token)
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["organization"] == {"id": org, "name": "Preview Co"}
    assert body["email"] == "nora@example.com" and body["status"] == "pending" and body["invitedBy"] == owner.name
    assert body["role"]["name"] == "Developer" and "Create, change and delete deployments" in body["role"]["allows"]
    assert body["expiresAt"] == invited.json["expiresAt"] and body["id"] == invited.json["id"]
    api.clock.advance(days=4)
    assert invitation_preview(api, token).json["status"] == "expired"


def test_a_replaced_or_forged_token_is_refused_as_accepting_would(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invited = api.post("/api/members/invite", owner, org, json={"email": "olga@example.com",
                       "roleId": api.role_id(org, "Viewer", owner)})  # fmt: skip
    old = api.invitation_token(org, invited.json["id"])
    assert api.post(f"/api/invitations/{invited.json['id']}/resend", owner, org, json={}).status_code == 200
    problem(invitation_preview(api, old), 410, "invitation_replaced")
    problem(invitation_preview(api, old[:-2] + "AA"), 404, "invalid_invitation_token")
    problem(api.get("/api/invitations/preview"), 422, "validation_failed")


def test_an_invite_link_preview_tells_its_status(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Linked")
    link = api.post("/api/invite-links", owner, org, json={"roleId": api.role_id(org, "Viewer", owner), "maxUses": 2})
    code = link.json["code"]
    body = api.get(f"/api/invite-links/preview?code={code}").json
    assert body["organization"]["name"] == "Linked" and body["status"] == "active"
    assert (body["maxUses"], body["useCount"], body["createdBy"], body["role"]["name"]) == (2, 0, owner.name, "Viewer")
    assert api.delete(f"/api/invite-links/{link.json['id']}", owner, org).status_code == 200
    assert api.get(f"/api/invite-links/preview?code={code}").json["status"] == "deleted"
    problem(api.get("/api/invite-links/preview?code=nope"), 404, "invalid_invite_link_code")


def test_failed_previews_are_limited_per_address(api: ApiClient) -> None:
    allowed = api.services.settings.accept_failures
    for attempt in range(allowed):
        problem(invitation_preview(api, f"guess-{attempt}", "203.0.113.9"), 404, "invalid_invitation_token")
    limited = problem(invitation_preview(api, "guess-more", "203.0.113.9"), 429, "rate_limited")
    assert "look up" in limited["detail"]
    assert int(invitation_preview(api, "x", "203.0.113.9").headers["Retry-After"]) > 0
    problem(invitation_preview(api, "guess", "203.0.113.10"), 404, "invalid_invitation_token")  # another address
