"""Auditors over HTTP (issue 16): the lists `asOf` a moment, a member's history, access reviews as JSON and
CSV, and the audit log's filters by member, e-mail and role, with unknown parameters and types refused.
What the store decides (the read model's SQL) runs on both stores."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import BOTH_STORES, ApiClient, User, problem

pytestmark = BOTH_STORES


def iso(moment: datetime) -> str:
    return moment.isoformat()


def as_of(api: ApiClient, path: str, user: User, org: str, at: datetime, **query: Any) -> Any:
    response = api.get(path, user, org, query_string={"asOf": iso(at), **query})
    assert response.status_code == 200, response.json
    return response.json


def scene(api: ApiClient) -> dict[str, Any]:
    """Olga's Acme, a minute a step: Ann joins by invitation as Developer, then becomes Admin; Bob is invited;
    Ann is made Owner; Bob's invitation is cancelled."""
    olga, ann = api.user("olga"), api.user("ann")
    org = api.new_org(olga, "Acme")
    moments = {"created": api.clock.advance(minutes=1)}
    ann = api.join(org, olga, "Developer", "ann")
    moments["ann joined"] = api.clock.advance(minutes=1)
    ann_id = api.member_id(org, ann, olga)
    api.put(f"/api/members/{ann_id}/role", olga, org, json={"roleId": api.role_id(org, "Admin", olga)})
    bob = api.post(
        "/api/members/invite", olga, org, json={"email": "bob@example.com", "roleId": api.role_id(org, "Viewer", olga)}
    ).json
    moments["ann admin, bob invited"] = api.clock.advance(minutes=1)
    api.post(f"/api/members/{ann_id}/transfer-ownership", olga, org)
    api.delete(f"/api/invitations/{bob['id']}", ann, org)
    moments["ann owner"] = api.clock.advance(minutes=1)
    return {"org": org, "olga": olga, "ann": ann, "ann_id": ann_id, "moments": moments}


def test_the_lists_as_they_were(api: ApiClient) -> None:
    s = scene(api)
    org, olga, m = s["org"], s["olga"], s["moments"]

    def roles_of_members(at: datetime) -> dict[str, str]:
        listed = as_of(api, "/api/members", olga, org, at)["members"]
        return {member["email"]: member["role"]["name"] for member in listed}

    assert roles_of_members(m["created"]) == {olga.email: "Owner"}
    assert roles_of_members(m["ann joined"]) == {olga.email: "Owner", s["ann"].email: "Developer"}
    assert roles_of_members(m["ann owner"]) == {olga.email: "Admin", s["ann"].email: "Owner"}
    then = as_of(api, "/api/members", olga, org, m["ann joined"], role="developer")
    assert set(then) == {"members", "total", "nextCursor"} and then["total"] == 1
    assert then["members"][0]["lastActiveAt"] is None  # activity is telemetry, not history
    roles = as_of(api, "/api/roles", olga, org, m["ann joined"])["roles"]
    assert {r["name"]: r["memberCount"] for r in roles} == {"Owner": 1, "Admin": 0, "Developer": 1, "Viewer": 0}
    pending = as_of(api, "/api/invitations", olga, org, m["ann admin, bob invited"])["invitations"]
    assert [(i["email"], i["status"]) for i in pending] == [("bob@example.com", "pending")]
    cancelled = as_of(api, "/api/invitations", olga, org, m["ann owner"], status="cancelled")["invitations"]
    assert [i["email"] for i in cancelled] == ["bob@example.com"]
    before = m["created"] - timedelta(hours=1)
    assert as_of(api, "/api/members", olga, org, before) == {"members": [], "total": 0, "nextCursor": None}


def test_a_members_history_over_http(api: ApiClient) -> None:
    s = scene(api)
    history = api.get(f"/api/members/{s['ann_id']}/history", s["olga"], s["org"]).json
    assert (history["memberId"], history["email"]) == (s["ann_id"], s["ann"].email)
    steps = [(i["role"]["name"], i["granted"]["how"], i["granted"]["by"]["email"]) for i in history["intervals"]]
    assert steps == [
        ("Developer", "invitation", s["olga"].email),
        ("Admin", "role_change", s["olga"].email),
        ("Owner", "ownership_transfer", s["olga"].email),
    ]
    first = history["intervals"][0]
    assert first["until"] is not None and first["ended"]["how"] == "role_change" and first["granted"]["via"]
    assert history["intervals"][-1]["until"] is None and history["intervals"][-1]["ended"] is None
    missing = "00000000-0000-4000-8000-000000000000"
    problem(api.get(f"/api/members/{missing}/history", s["olga"], s["org"]), 404, "member_not_found")


def test_an_access_review_as_json_and_csv(api: ApiClient) -> None:
    s = scene(api)
    org, olga, m = s["org"], s["olga"], s["moments"]
    window = {"permission": "manage:members", "from": iso(m["created"]), "to": iso(m["ann owner"])}
    review = api.get("/api/access-review", olga, org, query_string=window).json
    assert review["permission"] == "manage:members"
    held = {h["email"]: [(i["role"]["name"], i["granted"]["how"]) for i in h["intervals"]] for h in review["holders"]}
    assert held == {
        olga.email: [("Owner", "created"), ("Admin", "ownership_transfer")],
        s["ann"].email: [("Admin", "role_change"), ("Owner", "ownership_transfer")],
    }  # Ann's time as a Developer gave no such right
    exported = api.get("/api/access-review", olga, org, query_string={**window, "format": "csv"})
    assert exported.mimetype == "text/csv" and "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [(r["email"], r["role"], r["grantedHow"], r["grantedBy"]) for r in rows] == [
        (email, role, how, olga.email) for email in sorted(held) for role, how in held[email]
    ]
    early = {**window, "to": iso(m["created"])}
    assert [h["email"] for h in api.get("/api/access-review", olga, org, query_string=early).json["holders"]] == [
        olga.email
    ]


def test_history_needs_view_members_and_a_sound_window(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    custom = api.post("/api/roles", owner, org, json={"name": "Builds", "description": "",
                                                     "permissionIds": ["manage:deployments"]}).json  # fmt: skip
    builder = api.join(org, owner, "Builds", "builder")
    now = api.clock()
    for path in ("/api/members", "/api/roles"):
        problem(api.get(path, builder, org, query_string={"asOf": iso(now)}), 403, "missing_permission")
    assert api.get("/api/members", builder, org).status_code == 200  # today's list is for every member
    problem(api.get("/api/access-review", builder, org, query_string={"permission": "view:members",
                                                                      "from": iso(now)}), 403, "missing_permission")  # fmt: skip
    backwards = {"permission": "view:members", "from": iso(now), "to": iso(now - timedelta(days=1))}
    problem(api.get("/api/access-review", owner, org, query_string=backwards), 400, "invalid_window")
    refused = problem(api.get("/api/access-review", owner, org, query_string={"permission": "fly:planes",
                                                                              "from": iso(now)}), 422, "validation_failed")  # fmt: skip
    assert "permission" in str(refused)
    assert custom["name"] == "Builds"


def test_the_audit_log_filters_by_member_email_and_role_and_names_the_grantor(api: ApiClient) -> None:
    s = scene(api)
    org, olga = s["org"], s["olga"]

    def types(**query: str) -> list[str]:
        response = api.get("/api/audit-log", olga, org, query_string=query)
        assert response.status_code == 200, response.json
        return [e["type"] for e in response.json["events"] if not e["type"].startswith("InvitationEmail")]

    assert types(member=s["ann_id"]) == ["OwnershipTransferred", "RoleChanged", "InviteAccepted"]
    assert types(email="BOB@example.com") == ["InvitationCancelled", "MemberInvited"]
    assert types(role="Viewer") == ["MemberInvited"]  # Bob's; a cancellation names no role
    assert types(role="developer") == ["RoleChanged", "InviteAccepted", "MemberInvited"]
    joined = api.get("/api/audit-log", olga, org, query_string={"type": "InviteAccepted"}).json["events"][0]
    assert joined["actor"]["email"] == s["ann"].email
    assert joined["details"]["grantedBy"] == {"userId": olga.user_id, "email": olga.email}
    problem(api.get("/api/audit-log", olga, org, query_string={"role": "Nobody"}), 404, "role_not_found")


@pytest.mark.parametrize("path", ["/api/audit-log", "/api/members", "/api/invitations", "/api/roles"])
def test_an_unknown_query_parameter_is_refused_by_name(api: ApiClient, path: str) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    refused = problem(api.get(path, owner, org, query_string={"target": "x", "limit": "5"}), 400, "unknown_parameter")
    assert refused["detail"] == "Unknown query parameters: target." and refused["errors"] == {
        "target": "Unknown parameter."
    }
