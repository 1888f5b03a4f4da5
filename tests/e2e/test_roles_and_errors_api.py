"""Roles, permissions, /me, organizations, the audit log, generic errors, health and OpenAPI, over HTTP (issue 4)."""

from __future__ import annotations

import ast
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from werkzeug.test import TestResponse

import api as api_package
import membership.jobs  # noqa: F401 (its errors are MembershipErrors too)
from api.schemas import NAME_PATTERN
from membership.exceptions import MembershipError
from membership.permissions import ALL_PERMISSIONS, all_permissions
from tests.e2e.conftest import ApiClient, User, problem

SYSTEM_ROLES = ["Owner", "Admin", "Developer", "Viewer"]
ROLE_FIELDS = {"id", "name", "description", "isSystem", "permissions", "memberCount"}


def roles_by_name(api: ApiClient, org: str, user: User) -> dict[str, dict[str, Any]]:
    response = api.get("/api/roles", user, org)
    assert response.status_code == 200, response.json
    return {role["name"]: role for role in response.json["roles"]}


def create_role(api: ApiClient, org: str, user: User, name: str, *permissions: str) -> dict[str, Any]:
    response = api.post(
        "/api/roles", user, org, json={"name": name, "description": "", "permissionIds": list(permissions)}
    )
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def change_role(api: ApiClient, org: str, owner: User, member: User, role_id: str) -> None:
    response = api.put(f"/api/members/{api.member_id(org, member, owner)}/role", owner, org, json={"roleId": role_id})
    assert response.status_code == 200, response.json


# -- GET /api/roles ----------------------------------------------------------------------------------------------
def test_roles_lists_the_four_system_roles_first_then_custom_roles_with_their_fields(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    custom = create_role(api, org, owner, "Ops", "manage:servers")
    response = api.get("/api/roles", owner, org)
    assert response.status_code == 200 and set(response.json) == {"roles", "total", "nextCursor"}
    roles = response.json["roles"]
    assert [r["name"] for r in roles] == [*SYSTEM_ROLES, "Ops"]
    assert all(set(r) == ROLE_FIELDS for r in roles)
    assert [r["isSystem"] for r in roles] == [True, True, True, True, False]
    assert roles[-1]["id"] == custom["id"]
    assert set(roles[0]["permissions"]) == ALL_PERMISSIONS
    assert "manage:members" not in roles[2]["permissions"] and "manage:projects" in roles[2]["permissions"]
    assert all(p.startswith("view:") for p in roles[3]["permissions"])


def test_roles_count_the_members_holding_each_role(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    api.join(org, owner, "Developer", "dev1")
    dev2 = api.join(org, owner, "Developer", "dev2")
    ops = create_role(api, org, owner, "Ops", "manage:servers")
    change_role(api, org, owner, dev2, ops["id"])
    counts = {name: role["memberCount"] for name, role in roles_by_name(api, org, owner).items()}
    assert counts == {"Owner": 1, "Admin": 0, "Developer": 1, "Viewer": 0, "Ops": 1}


def test_any_member_may_list_roles(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer = api.join(org, owner, "Viewer", "viewer")
    response = api.get("/api/roles", viewer, org)
    assert response.status_code == 200 and [r["name"] for r in response.json["roles"]] == SYSTEM_ROLES


# -- POST /api/roles -----------------------------------------------------------------------------------------------
def test_creating_a_role_is_201_and_manage_implies_view(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    body = {
        "name": "Release Managers",
        "description": "Ship it",
        "permissionIds": ["manage:deployments", "view:billing"],
    }
    response = api.post("/api/roles", owner, org, json=body)
    assert response.status_code == 201
    role = response.json
    assert set(role) == ROLE_FIELDS
    assert (role["name"], role["description"], role["isSystem"], role["memberCount"]) == (
        "Release Managers",
        "Ship it",
        False,
        0,
    )
    assert sorted(role["permissions"]) == ["manage:deployments", "view:billing", "view:deployments"]
    assert roles_by_name(api, org, owner)["Release Managers"] == role


def test_creating_a_role_with_a_taken_name_is_409_role_name_taken(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    create_role(api, org, owner, "Ops", "view:servers")
    problem(api.post("/api/roles", owner, org, json={"name": "Ops", "permissionIds": []}), 409, "role_name_taken")
    problem(api.post("/api/roles", owner, org, json={"name": "ops", "permissionIds": []}), 409, "role_name_taken")
    taken = api.post("/api/roles", owner, org, json={"name": "Developer", "permissionIds": []})
    problem(taken, 409, "role_name_taken")
    assert [name for name in roles_by_name(api, org, owner)] == [*SYSTEM_ROLES, "Ops"]


def test_creating_a_role_with_an_unknown_permission_is_422(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    body = {"name": "Pilots", "permissionIds": ["view:members", "fly:rockets"]}
    body = problem(api.post("/api/roles", owner, org, json=body), 422, "validation_failed")
    assert "permissionIds" in body["errors"] and "Unknown permission fly:rockets" in json.dumps(body["errors"])
    assert "Pilots" not in roles_by_name(api, org, owner)


def test_creating_a_role_with_an_unknown_field_is_422_validation_failed(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    response = api.post("/api/roles", owner, org, json={"name": "X", "permissionIds": [], "isSystem": True})
    body = problem(response, 422, "validation_failed")
    assert "isSystem" in body["errors"]


def test_a_developer_creating_a_role_is_403_missing_permission_manage_roles(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    developer = api.join(org, owner, "Developer", "dev")
    response = api.post("/api/roles", developer, org, json={"name": "Mine", "permissionIds": ["view:members"]})
    body = problem(response, 403, "missing_permission")
    assert body["permission"] == "manage:roles" and "manage:roles" in body["detail"]
    assert "Mine" not in roles_by_name(api, org, owner)


# -- PUT / DELETE /api/roles/{id} ----------------------------------------------------------------------------------
def test_updating_a_custom_role_is_200_with_the_new_role(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    role = create_role(api, org, owner, "Ops", "view:servers")
    body = {"name": "Platform", "description": "Runs servers", "permissionIds": ["manage:servers"]}
    response = api.put(f"/api/roles/{role['id']}", owner, org, json=body)
    assert response.status_code == 200
    assert response.json == {
        "id": role["id"],
        "name": "Platform",
        "description": "Runs servers",
        "isSystem": False,
        "permissions": ["manage:servers", "view:servers"],
        "memberCount": 0,
    }
    assert roles_by_name(api, org, owner)["Platform"] == response.json


def test_updating_a_role_takes_effect_on_its_holders_next_request(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    recruiter = api.join(org, owner, "Viewer", "recruiter")
    role = create_role(api, org, owner, "Recruiters", "manage:members")
    change_role(api, org, owner, recruiter, role["id"])
    assert api.get("/api/invitations", recruiter, org).status_code == 200
    api.put(f"/api/roles/{role['id']}", owner, org, json={"permissionIds": ["view:members"]})
    problem(api.get("/api/invitations", recruiter, org), 403, "missing_permission")


@pytest.mark.parametrize("system_role", SYSTEM_ROLES)
def test_a_system_role_cannot_be_updated_or_deleted_409_system_role_immutable(api: ApiClient, system_role: str) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    before = roles_by_name(api, org, owner)
    role_id = before[system_role]["id"]
    updated = api.put(f"/api/roles/{role_id}", owner, org, json={"name": "Renamed", "permissionIds": []})
    problem(updated, 409, "system_role_immutable")
    problem(api.delete(f"/api/roles/{role_id}", owner, org), 409, "system_role_immutable")
    assert roles_by_name(api, org, owner) == before


def test_deleting_an_unused_custom_role_is_200_and_removes_it(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    role = create_role(api, org, owner, "Temp", "view:members")
    response = api.delete(f"/api/roles/{role['id']}", owner, org)
    assert response.status_code == 200 and set(response.json) == {"message"} and response.json["message"]
    assert list(roles_by_name(api, org, owner)) == SYSTEM_ROLES
    problem(api.delete(f"/api/roles/{role['id']}", owner, org), 404, "role_not_found")


def test_deleting_a_role_someone_holds_is_409_role_in_use(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    member = api.join(org, owner, "Viewer", "member")
    role = create_role(api, org, owner, "Ops", "view:servers")
    change_role(api, org, owner, member, role["id"])
    problem(api.delete(f"/api/roles/{role['id']}", owner, org), 409, "role_in_use")
    assert roles_by_name(api, org, owner)["Ops"]["memberCount"] == 1


def test_a_developer_updating_or_deleting_a_role_is_403_missing_permission(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    developer = api.join(org, owner, "Developer", "dev")
    role = create_role(api, org, owner, "Ops", "view:servers")
    updated = api.put(f"/api/roles/{role['id']}", developer, org, json={"name": "Mine"})
    assert problem(updated, 403, "missing_permission")["permission"] == "manage:roles"
    problem(api.delete(f"/api/roles/{role['id']}", developer, org), 403, "missing_permission")
    assert roles_by_name(api, org, owner)["Ops"] == role


# -- GET /api/permissions -------------------------------------------------------------------------------------------
def test_permissions_lists_the_sixteen_action_resource_permissions(api: ApiClient) -> None:
    response = api.get("/api/permissions", api.user())
    assert response.status_code == 200 and set(response.json) == {"permissions"}
    permissions = response.json["permissions"]
    assert len(permissions) == 16
    assert all(set(p) == {"id", "action", "resource", "description"} for p in permissions)
    assert all(p["id"] == f"{p['action']}:{p['resource']}" and p["description"] for p in permissions)
    assert {p["id"] for p in permissions} == ALL_PERMISSIONS


def test_permissions_need_a_token(api: ApiClient) -> None:
    problem(api.get("/api/permissions"), 401, "missing_token")


# -- GET /api/me ---------------------------------------------------------------------------------------------------
def test_me_describes_the_caller_in_the_active_organization(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    developer = api.join(org, owner, "Developer", "dev")
    response = api.get("/api/me", developer, org)
    assert response.status_code == 200
    me = response.json
    assert set(me) == {"userId", "email", "organizationId", "member", "role", "permissions"}
    assert (me["userId"], me["email"], me["organizationId"]) == (developer.user_id, developer.email, org)
    assert me["member"]["id"] == api.member_id(org, developer, owner)
    assert me["member"]["userId"] == developer.user_id and me["member"]["role"]["name"] == "Developer"
    assert me["role"]["name"] == "Developer" and sorted(me["permissions"]) == sorted(me["role"]["permissions"])
    assert "manage:projects" in me["permissions"] and "manage:members" not in me["permissions"]


def test_me_changes_on_the_very_next_request_after_a_role_change(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    member = api.join(org, owner, "Developer", "dev")
    assert api.get("/api/me", member, org).json["role"]["name"] == "Developer"
    change_role(api, org, owner, member, api.role_id(org, "Admin", owner))
    me = api.get("/api/me", member, org).json
    assert me["role"]["name"] == "Admin" and set(me["permissions"]) == ALL_PERMISSIONS
    change_role(api, org, owner, member, api.role_id(org, "Viewer", owner))
    me = api.get("/api/me", member, org).json
    assert me["role"]["name"] == "Viewer" and all(p.startswith("view:") for p in me["permissions"])
    problem(api.get("/api/invitations", member, org), 403, "missing_permission")


# -- /api/organizations --------------------------------------------------------------------------------------------
def test_creating_an_organization_is_201_and_the_caller_becomes_owner(api: ApiClient) -> None:
    founder = api.user("founder")
    response = api.post("/api/organizations", founder, json={"name": "Globex Corp"})
    assert response.status_code == 201
    assert set(response.json) == {"id", "name", "createdAt"} and response.json["name"] == "Globex Corp"
    assert datetime.fromisoformat(response.json["createdAt"]).tzinfo is not None
    me = api.get("/api/me", founder, response.json["id"])
    assert me.status_code == 200 and me.json["role"]["name"] == "Owner"


@pytest.mark.parametrize(
    ("name", "code"), [("", "validation_failed"), ("   ", "invalid_value")], ids=["empty", "blank"]
)
def test_creating_an_organization_with_an_empty_name_is_422(api: ApiClient, name: str, code: str) -> None:
    founder = api.user("founder")
    body = problem(api.post("/api/organizations", founder, json={"name": name}), 422, code)
    assert "name" in body["errors"]
    assert api.get("/api/organizations", founder).json == {"organizations": [], "total": 0, "nextCursor": None}


def test_creating_an_organization_without_a_name_is_422_validation_failed(api: ApiClient) -> None:
    body = problem(api.post("/api/organizations", api.user(), json={}), 422, "validation_failed")
    assert "name" in body["errors"]


def test_organizations_lists_the_callers_organizations_with_their_role_in_each(api: ApiClient) -> None:
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    alpha = api.new_org(alice, "Alpha")
    beta = api.new_org(bob, "Beta")
    api.new_org(carol, "Gamma")
    invited = api.post(
        "/api/members/invite", bob, beta, json={"email": alice.email, "roleId": api.role_id(beta, "Developer", bob)}
    )
    token = api.invitation_token(beta, invited.json["id"])
    assert api.post("/api/auth/accept-invite", alice, json={"token": token}).status_code == 200
    response = api.get("/api/organizations", alice)
    assert response.status_code == 200 and set(response.json) == {"organizations", "total", "nextCursor"}
    listed = {o["id"]: o for o in response.json["organizations"]}
    assert set(listed) == {alpha, beta}
    assert all(set(o) == {"id", "name", "role"} for o in listed.values())
    assert (listed[alpha]["name"], listed[alpha]["role"]["name"]) == ("Alpha", "Owner")
    assert (listed[beta]["name"], listed[beta]["role"]["name"]) == ("Beta", "Developer")
    assert [o["id"] for o in api.get("/api/organizations", bob).json["organizations"]] == [beta]


# -- GET /api/audit-log --------------------------------------------------------------------------------------------
def audit(api: ApiClient, org: str, user: User, **query: Any) -> TestResponse:
    return api.get("/api/audit-log", user, org, query_string=query)


def without_mail(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of commands: the mailer records InvitationEmail* events on its own schedule."""
    return [e for e in events if not e["type"].startswith("InvitationEmail")]


def test_the_audit_log_lists_events_newest_first_with_actor_target_and_details(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Audited")
    member = api.join(org, owner, "Developer", "dev")
    member_id = api.member_id(org, member, owner)
    change_role(api, org, owner, member, api.role_id(org, "Viewer", owner))
    response = audit(api, org, owner)
    assert response.status_code == 200 and set(response.json) == {"events", "nextCursor"}
    assert response.json["nextCursor"] is None
    events = without_mail(response.json["events"])
    assert [e["type"] for e in events] == ["RoleChanged", "InviteAccepted", "MemberInvited", "MemberJoined", "Created"]
    times = [datetime.fromisoformat(e["occurredAt"]) for e in events]
    assert times == sorted(times, reverse=True)
    for event in events:
        assert {"type", "occurredAt", "actor", "target", "details"} <= set(event)
        assert set(event["actor"]) == {"userId", "email"} and set(event["target"]) == {"type", "id", "label"}
        assert isinstance(event["details"], dict)
    changed = events[0]
    assert changed["actor"] == {"userId": owner.user_id, "email": owner.email}
    assert changed["target"] == {"type": "member", "id": member_id, "label": member.email}
    assert changed["details"]["role"] == "Viewer"
    assert events[1]["actor"] == {"userId": member.user_id, "email": member.email}
    assert events[-1]["target"] == {"type": "organization", "id": org, "label": "Audited"}


@pytest.mark.parametrize("role", ["Developer", "Viewer"])
def test_the_audit_log_needs_manage_members(api: ApiClient, role: str) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    member = api.join(org, owner, role, "member")
    body = problem(audit(api, org, member), 403, "missing_permission")
    assert body["permission"] == "manage:members"
    admin = api.join(org, owner, "Admin", "admin")
    assert audit(api, org, admin).status_code == 200


def test_the_audit_log_filters_by_event_type(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    member = api.join(org, owner, "Developer", "dev")
    change_role(api, org, owner, member, api.role_id(org, "Viewer", owner))
    change_role(api, org, owner, member, api.role_id(org, "Admin", owner))
    response = audit(api, org, owner, type="RoleChanged")
    assert response.status_code == 200
    assert [(e["type"], e["details"]["role"]) for e in response.json["events"]] == [
        ("RoleChanged", "Admin"),
        ("RoleChanged", "Viewer"),
    ]
    refused = problem(audit(api, org, owner, type="NoSuchEvent"), 400, "unknown_event_type")
    assert "'NoSuchEvent' is not an event type" in refused["detail"] and "RoleChanged" in refused["detail"]


def test_the_audit_log_filters_by_actor_id_or_email(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    member = api.join(org, owner, "Developer", "dev")
    by_id = audit(api, org, owner, actor=member.user_id).json["events"]
    assert [e["type"] for e in by_id] == ["InviteAccepted"]
    assert audit(api, org, owner, actor=member.email).json["events"] == by_id
    by_owner = audit(api, org, owner, actor=owner.user_id).json["events"]
    assert [e["type"] for e in by_owner] == ["MemberInvited", "MemberJoined", "Created"]


def test_the_audit_log_filters_by_since_and_until(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    api.clock.advance(hours=2)
    api.join(org, owner, "Developer", "dev")
    cut = api.clock() - timedelta(hours=1)
    later = audit(api, org, owner, since=cut.isoformat())
    assert later.status_code == 200
    assert [e["type"] for e in without_mail(later.json["events"])] == ["InviteAccepted", "MemberInvited"]
    earlier = audit(api, org, owner, until=cut.isoformat())
    assert [e["type"] for e in earlier.json["events"]] == ["MemberJoined", "Created"]
    window = audit(api, org, owner, since=(cut - timedelta(hours=2)).isoformat(), until=cut.isoformat())
    assert window.json["events"] == earlier.json["events"]


def test_the_audit_log_pages_with_next_cursor(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    for name in ("One", "Two", "Three", "Four", "Five"):
        create_role(api, org, owner, name, "view:members")
    everything = audit(api, org, owner).json["events"]
    assert len(everything) == 7
    pages, cursor = [], None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = audit(api, org, owner, **query)
        assert page.status_code == 200 and len(page.json["events"]) <= 3
        pages.append(page.json["events"])
        cursor = page.json["nextCursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e for p in pages for e in p] == everything


def test_the_audit_log_refuses_a_cursor_it_did_not_make_400_invalid_cursor(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    problem(audit(api, org, owner, cursor="not-a-cursor!"), 400, "invalid_cursor")


def test_the_audit_log_never_contains_an_invitation_token_or_a_link_code(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer_role = api.role_id(org, "Viewer", owner)
    invitee, link_user = api.user("invitee"), api.user("linked")
    invited = api.post("/api/members/invite", owner, org, json={"email": invitee.email, "roleId": viewer_role})
    first_token = api.invitation_token(org, invited.json["id"])
    assert api.post(f"/api/invitations/{invited.json['id']}/resend", owner, org, json={}).status_code == 200
    second_token = api.invitation_token(org, invited.json["id"])
    assert api.post("/api/auth/accept-invite", invitee, json={"token": second_token}).status_code == 200
    link = api.post("/api/invite-links", owner, org, json={"roleId": viewer_role, "maxUses": 2, "expiresInDays": 7})
    code = link.json["code"]
    assert link.json["url"].endswith(f"/join/{code}")
    assert api.post("/api/auth/accept-invite-link", link_user, json={"code": code}).status_code == 200
    assert api.delete(f"/api/invite-links/{link.json['id']}", owner, org).status_code == 200

    response = audit(api, org, owner, limit=200)
    types = [e["type"] for e in response.json["events"]]
    assert {"MemberInvited", "InvitationResent", "InviteAccepted", "InviteLinkCreated", "MemberJoinedByLink"} <= set(
        types
    )
    text = response.get_data(as_text=True)
    for secret in (first_token, second_token, code):
        assert secret not in text


# -- generic errors ------------------------------------------------------------------------------------------------
def test_a_malformed_json_body_is_400_malformed_json(api: ApiClient) -> None:
    response = api.post("/api/organizations", api.user(), data='{"name": "Acme"', content_type="application/json")
    problem(response, 400, "malformed_json")


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("name=Acme", "application/x-www-form-urlencoded"),
        ('{"name": "Acme"}', "text/plain"),
        ("<name/>", "application/xml"),
    ],
)
def test_a_non_json_body_is_415_unsupported_media_type(api: ApiClient, data: str, content_type: str) -> None:
    founder = api.user()
    problem(
        api.post("/api/organizations", founder, data=data, content_type=content_type), 415, "unsupported_media_type"
    )
    assert api.get("/api/organizations", founder).json == {"organizations": [], "total": 0, "nextCursor": None}


def test_a_body_over_64_kib_is_413_payload_too_large(api: ApiClient) -> None:
    founder = api.user()
    response = api.post("/api/organizations", founder, json={"name": "x" * (64 * 1024 + 1)})
    problem(response, 413, "payload_too_large")
    assert api.get("/api/organizations", founder).json == {"organizations": [], "total": 0, "nextCursor": None}


@pytest.mark.parametrize("path", ["/api/no-such-thing", "/api/members/not-a-uuid", "/nowhere"])
def test_an_unknown_route_is_a_404_not_found_problem(api: ApiClient, path: str) -> None:
    problem(api.get(path, api.user()), 404, "not_found")


WRONG_METHODS = [
    ("DELETE", "/api/organizations", {"GET", "POST"}),
    ("PATCH", "/api/roles", {"GET", "POST"}),
    ("POST", "/api/me", {"GET"}),
]


@pytest.mark.parametrize(("method", "path", "allowed"), WRONG_METHODS)
def test_a_wrong_method_is_a_405_method_not_allowed_problem(
    api: ApiClient, method: str, path: str, allowed: set[str]
) -> None:
    problem(api.request(method, path, api.user()), 405, "method_not_allowed")


@pytest.mark.parametrize(("method", "path", "allowed"), WRONG_METHODS)
def test_a_405_names_the_allowed_methods_in_an_allow_header(
    api: ApiClient, method: str, path: str, allowed: set[str]
) -> None:
    """RFC 9110 section 15.5.6: a 405 response MUST carry Allow."""
    response = api.request(method, path, api.user())
    assert response.status_code == 405
    assert allowed <= {m.strip() for m in response.headers.get("Allow", "").split(",")}


ERROR_REQUESTS = [
    ("GET", "/api/members", {}, 401),
    ("GET", "/api/members", {"headers": {"Authorization": "Bearer not.a.jwt"}}, 401),
    ("POST", "/api/organizations", {"data": "{", "content_type": "application/json"}, 400),
    ("POST", "/api/organizations", {"data": "x", "content_type": "text/plain"}, 415),
    ("POST", "/api/organizations", {"json": {"name": "x" * 70_000}}, 413),
    ("POST", "/api/organizations", {"json": {"name": 42}}, 422),
    ("GET", "/api/nothing", {}, 404),
    ("PUT", "/api/health", {}, 405),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), ERROR_REQUESTS)
def test_every_error_is_a_problem_json_with_a_request_id_and_no_traceback(
    api: ApiClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    user = api.user() if status != 401 else None
    response = api.request(method, path, user, **kwargs)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert {"type", "title", "status", "detail", "code"} <= set(body) and body["status"] == status
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    assert response.headers.get("X-Request-Id")


def test_every_response_carries_an_x_request_id(api: ApiClient) -> None:
    owner = api.user("owner")
    first, second = api.get("/api/organizations", owner), api.get("/api/organizations", owner)
    assert first.status_code == 200 and first.headers["X-Request-Id"]
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def test_a_client_x_request_id_is_echoed(api: ApiClient) -> None:
    response = api.get("/api/health", headers={"X-Request-Id": "trace-abc-123"})
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "trace-abc-123"


# -- GET /api/health -----------------------------------------------------------------------------------------------
def test_health_is_200_with_the_database_and_each_projections_lag(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    # Join by link: an e-mail invitation would let the mailer add an event while we look.
    link = api.post("/api/invite-links", owner, org, json={"roleId": api.role_id(org, "Viewer", owner)})
    assert api.post("/api/auth/accept-invite-link", api.user("p"), json={"code": link.json["code"]}).status_code == 200
    response = api.get("/api/health")
    assert response.status_code == 200
    health = response.json
    assert (health["status"], health["database"]) == ("ok", "ok")
    assert isinstance(health["position"], int) and health["position"] >= 4
    assert {"members", "roles", "invitations", "audit"} <= set(health["projections"])
    for projection in health["projections"].values():
        assert projection == {"position": health["position"], "lag": 0, "parked": 0, "stalled": False, "error": None}
    assert health["parked"] == [] and health["mail"]["status"] == "ok"


# -- GET /api/openapi.json -----------------------------------------------------------------------------------------
# Every path of issue 4 and its methods, with the success status each operation documents.
ISSUE_4_PATHS: dict[str, dict[str, str]] = {
    "/api/organizations": {"post": "201", "get": "200"},
    "/api/members": {"get": "200"},
    "/api/members/invite": {"post": "201"},
    "/api/members/leave": {"post": "200"},
    "/api/members/{}": {"delete": "200"},
    "/api/members/{}/role": {"put": "200"},
    "/api/members/{}/transfer-ownership": {"post": "200"},
    "/api/invitations": {"get": "200"},
    "/api/invitations/{}": {"delete": "200"},
    "/api/invitations/{}/resend": {"post": "200"},
    "/api/invite-links": {"post": "201", "get": "200"},
    "/api/invite-links/{}": {"delete": "200"},
    "/api/auth/accept-invite": {"post": "200"},
    "/api/auth/accept-invite-link": {"post": "200"},
    "/api/roles": {"get": "200", "post": "201"},
    "/api/roles/{}": {"put": "200", "delete": "200"},
    "/api/permissions": {"get": "200"},
    "/api/me": {"get": "200"},
    "/api/audit-log": {"get": "200"},
    "/api/health": {"get": "200"},
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def test_the_openapi_document_is_a_valid_openapi_3_document(api: ApiClient) -> None:
    response = api.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    spec = response.json
    assert spec["openapi"].startswith("3.")
    validate(spec)
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_the_openapi_document_describes_every_path_of_issue_4_with_its_methods(api: ApiClient) -> None:
    spec = api.get("/api/openapi.json").json
    described = {re.sub(r"\{[^}]+\}", "{}", path): item for path, item in spec["paths"].items()}
    for path, methods in ISSUE_4_PATHS.items():
        assert path in described, f"{path} is not in the OpenAPI document"
        assert set(described[path]) & HTTP_METHODS == set(methods), path
        for method, status in methods.items():
            assert status in described[path][method]["responses"], (method, path, status)


# What every operation documents, by its kind: (status, code) pairs (api.problems).
EVERY_REQUEST = {(500, "internal_error"), (503, "database_unavailable")}
WITH_A_TOKEN = {(401, code) for code in ("missing_token", "invalid_token", "token_expired", "invalid_token_claims")}
IN_AN_ORGANIZATION = {(400, "organization_required"), (400, "invalid_organization_id"), (403, "not_a_member"),
                      (503, "organization_degraded")}  # fmt: skip
COMMAND = {(400, "invalid_idempotency_key"), (409, "idempotency_key_reused"), (409, "idempotency_key_in_use"),
           (413, "payload_too_large"), (415, "unsupported_media_type"), (503, "read_model_lagging")}  # fmt: skip
JSON_BODY = {(400, "malformed_json"), (422, "validation_failed")}
PUBLIC = {("get", "/api/health"), ("get", "/api/invitations/preview"), ("get", "/api/invite-links/preview"),
          ("post", "/api/operator/erasures")}  # fmt: skip (the last: the operators' own token, not a user's)
NOT_IN_AN_ORGANIZATION = PUBLIC | {
    ("get", "/api/organizations"), ("post", "/api/organizations"), ("get", "/api/permissions"),
    ("post", "/api/auth/accept-invite"), ("post", "/api/auth/accept-invite-link"),
}  # fmt: skip
OPTIONAL_BODIES = {("put", "/api/roles/{role_id}"), ("post", "/api/invitations/{invitation_id}/resend")}
# Domain codes no answer carries: base classes never raised themselves, and organization_not_found (an
# unknown organization is answered like one the caller does not belong to: not_a_member).
NEVER_RAISED = {"membership_error", "permission_denied", "gone", "organization_not_found"}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, path, op) for path, item in spec["paths"].items() for m, op in item.items() if m in HTTP_METHODS]


def documented_codes(operation: dict[str, Any]) -> set[tuple[int, str]]:
    codes = set()
    for status, response in operation["responses"].items():
        if not status.startswith("2"):
            schema = response["content"]["application/problem+json"]["schema"]
            codes |= {(int(status), code) for code in schema["allOf"][1]["properties"]["code"]["enum"]}
    return codes


def test_every_operation_documents_the_problems_any_request_of_its_kind_can_meet(api: ApiClient) -> None:
    spec = api.get("/api/openapi.json").json
    for method, path, operation in operations(spec):
        key, command = (method, path), method in ("post", "put", "patch", "delete")
        expected = EVERY_REQUEST | (set() if key in PUBLIC else WITH_A_TOKEN) | (COMMAND if command else set())
        expected |= set() if key in NOT_IN_AN_ORGANIZATION else IN_AN_ORGANIZATION
        expected |= JSON_BODY if "requestBody" in operation else set()
        assert expected <= documented_codes(operation), (method, path, expected - documented_codes(operation))
        parameters = {parameter.get("$ref") for parameter in operation.get("parameters", [])}
        assert ("#/components/parameters/OrganizationId" in parameters) is (key not in NOT_IN_AN_ORGANIZATION), key
        assert ("#/components/parameters/IdempotencyKey" in parameters) is command, key
        assert operation.get("security", spec["security"]) == ([] if key in PUBLIC else [{"bearerAuth": []}]), key


def test_every_error_is_documented_as_a_problem_json_with_its_codes_and_headers(api: ApiClient) -> None:
    spec = api.get("/api/openapi.json").json
    for method, path, operation in operations(spec):
        assert "default" not in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            if status.startswith("2"):
                exported = {"text/csv"} if path == "/api/access-review" else set()  # also as CSV
                assert set(response["content"]) == {"application/json", *exported}, (method, path)
                assert status != "202" or headers["Location"]["required"], (method, path)
                continue
            assert set(response["content"]) == {"application/problem+json"}, (method, path, status)
            problem_schema, codes_schema = response["content"]["application/problem+json"]["schema"]["allOf"]
            assert problem_schema == {"$ref": "#/components/schemas/Problem"}
            assert codes_schema["properties"]["status"]["enum"] == [int(status)]
            codes = codes_schema["properties"]["code"]["enum"]
            assert codes and all(f"`{code}`" in response["description"] for code in codes), (method, path, status)
            required = {"401": "WWW-Authenticate", "429": "Retry-After", "503": "Retry-After"}.get(status)
            assert required is None or headers[required]["required"], (method, path, status)


def test_the_document_names_every_refusal_the_server_gives_and_no_code_it_never_sends(api: ApiClient) -> None:
    spec = api.get("/api/openapi.json").json
    documented = {code for _, _, operation in operations(spec) for _, code in documented_codes(operation)}
    domain = {error.code for error in _subclasses(MembershipError)}
    assert domain - documented == NEVER_RAISED
    written = {  # every string the API modules write, but the declarations themselves
        node.value
        for module in Path(api_package.__file__).parent.glob("*.py")
        if module.name != "problems.py"
        for node in ast.walk(ast.parse(module.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert documented - domain - written == set()


def test_the_document_declares_the_constraints_the_server_enforces(api: ApiClient) -> None:
    spec = api.get("/api/openapi.json").json
    schemas, permissions = spec["components"]["schemas"], [p.id for p in all_permissions()]
    assert schemas["Invite"]["properties"]["email"]["format"] == "idn-email"  # not `email`: IDN addresses are valid
    for name in ("RoleCreate", "RoleUpdate"):
        assert schemas[name]["properties"]["permissionIds"]["items"]["enum"] == permissions
        assert schemas[name]["properties"]["name"]["pattern"] == NAME_PATTERN
    assert schemas["OrganizationCreate"]["properties"]["name"]["pattern"] == NAME_PATTERN
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail", "code"}
    assert spec["components"]["parameters"]["OrganizationId"]["schema"]["format"] == "uuid"
    for method, path, operation in operations(spec):
        query = {p["name"]: p["schema"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        if "cursor" in query:
            assert query["cursor"]["pattern"] == "^[A-Za-z0-9_-]+$" and query["limit"]["minimum"] == 1
            assert query["limit"]["maximum"] == 200, (method, path)
        for parameter in spec["paths"][path].get("parameters", []):
            assert parameter["in"] == "path" and parameter["schema"] == {"type": "string", "format": "uuid"}
        body = operation.get("requestBody")
        assert body is None or body["required"] is ((method, path) not in OPTIONAL_BODIES), (method, path)


def _subclasses(cls: type[MembershipError]) -> list[type[MembershipError]]:
    return [cls] + [sub for direct in cls.__subclasses__() for sub in _subclasses(direct)]
