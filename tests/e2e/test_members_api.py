"""`/api/members` over HTTP: list, invite, change role, remove, leave, transfer ownership, rate limit.

Every rule of issue 4 for these endpoints: status and body of each success, and the problem
(status and stable code) of each refusal. On SQLite; what the store decides also on PostgreSQL
(BOTH_STORES): the stored fields and times of a listed member, the keyset pages over join times,
and case-insensitive, literal search.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from werkzeug.test import TestResponse

from membership.organization import system_role_id
from membership.permissions import MANAGE_MEMBERS
from projections import members as members_reads
from service.settings import Settings
from tests.e2e.conftest import BOTH_STORES, JWT_SECRET, ApiClient, User, problem

MEMBER_FIELDS = {"id", "userId", "email", "name", "role", "joinedAt", "lastActiveAt"}
INVITATION_FIELDS = {"id", "email", "status", "role", "invitedBy", "expiresAt", "createdAt"}


# -- arranging -------------------------------------------------------------------------------------------------
def invite(api: ApiClient, inviter: User, org: str, email: str, role: str = "Viewer", **extra: Any) -> TestResponse:
    body = {"email": email, "roleId": api.role_id(org, role, inviter), **extra}
    return api.post("/api/members/invite", inviter, org, json=body)


def join_by_link(api: ApiClient, org: str, owner: User, people: int | list[User], role: str = "viewer") -> list[User]:
    """New members with `role`, one after the other, through one unlimited invite link (`people`: how many,
    or who). Made in-process, as the tests using it read the list, then shown by the read models as after a
    command (read-your-writes)."""
    app, org_id = api.services.organizations, UUID(org)
    code = app.create_invite_link(org_id, owner, system_role_id(org_id, role)).secret
    assert code is not None
    users = [api.user(f"m{i}") for i in range(people)] if isinstance(people, int) else people
    for user in users:
        app.accept_invite_link(user, code)
    api.caught_up()
    return users


def members(api: ApiClient, viewer: User, org: str, query: str = "") -> dict[str, Any]:
    response = api.get(f"/api/members{query}", viewer, org)
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def role_of(api: ApiClient, org: str, user: User, viewer: User) -> str:
    listed = members(api, viewer, org, "?limit=200")["members"]
    return str(next(m["role"]["name"] for m in listed if m["userId"] == user.user_id))


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- GET /api/members ------------------------------------------------------------------------------------------
@BOTH_STORES
def test_members_list_shows_every_field_of_each_member_oldest_first(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    [dev] = join_by_link(api, org, owner, [api.user("dev")], "developer")

    body = members(api, owner, org)

    assert body["total"] == 2 and body["nextCursor"] is None
    first, second = body["members"]
    assert set(first) == MEMBER_FIELDS and set(second) == MEMBER_FIELDS
    assert (first["userId"], first["email"], first["name"]) == (owner.user_id, owner.email, owner.name)
    assert (second["userId"], second["email"], second["name"]) == (dev.user_id, dev.email, dev.name)
    assert set(first["role"]) == {"id", "name", "permissions"}
    assert first["role"]["name"] == "Owner" and "manage:members" in first["role"]["permissions"]
    assert second["role"]["id"] == api.role_id(org, "Developer", owner) and second["role"]["name"] == "Developer"
    assert "manage:projects" in second["role"]["permissions"]
    assert "manage:members" not in second["role"]["permissions"]
    assert when(first["joinedAt"]) <= when(second["joinedAt"])
    assert first["lastActiveAt"] is not None and when(first["lastActiveAt"])


def test_last_active_at_is_set_once_the_member_makes_a_request(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev = api.join(org, owner, "Developer", "dev")

    assert api.get("/api/members", dev, org).status_code == 200

    listed = {m["userId"]: m for m in members(api, owner, org)["members"]}
    assert listed[dev.user_id]["lastActiveAt"] is not None


def test_members_limit_defaults_to_50(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    join_by_link(api, org, owner, 50)

    default = members(api, owner, org)
    everyone = members(api, owner, org, "?limit=200")

    assert len(default["members"]) == 50 and default["total"] == 51 and default["nextCursor"]
    assert len(everyone["members"]) == 51 and everyone["total"] == 51 and everyone["nextCursor"] is None


def test_members_limit_outside_1_to_200_is_refused_with_422(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    for limit in ["201", "0", "-1", "ten"]:
        body = problem(api.get(f"/api/members?limit={limit}", owner, org), 422, "validation_failed")
        assert list(body["errors"]) == ["limit"], limit


@BOTH_STORES
def test_members_keyset_pages_cover_every_member_exactly_once(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    join_by_link(api, org, owner, 6)
    expected = [m["id"] for m in members(api, owner, org, "?limit=200")["members"]]

    seen: list[str] = []
    pages: list[int] = []
    cursor = ""
    while True:
        page = members(api, owner, org, f"?limit=3{cursor}")
        assert page["total"] == 7
        seen += [m["id"] for m in page["members"]]
        assert len(seen) <= 7, "a page repeats members"  # rather than walking on for ever
        pages.append(len(page["members"]))
        if page["nextCursor"] is None:
            break
        cursor = f"&cursor={page['nextCursor']}"

    assert pages == [3, 3, 1]
    assert seen == expected and len(set(seen)) == 7


def test_members_cursor_stays_valid_while_members_join(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    join_by_link(api, org, owner, 3)
    first = members(api, owner, org, "?limit=2")

    late = join_by_link(api, org, owner, 1)[0]
    rest = members(api, owner, org, f"?limit=200&cursor={first['nextCursor']}")

    ids = [m["id"] for m in first["members"] + rest["members"]]
    assert len(ids) == len(set(ids)) == 5 and rest["members"][-1]["userId"] == late.user_id


def test_members_filter_by_role_id_or_role_name(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    devs = {dev.user_id for dev in join_by_link(api, org, owner, [api.user("dev"), api.user("dev")], "developer")}
    [viewer] = join_by_link(api, org, owner, [api.user("viewer")])

    by_name = members(api, owner, org, "?role=Developer")
    by_id = members(api, owner, org, f"?role={api.role_id(org, 'Viewer', owner)}")

    assert by_name["total"] == 2 and {m["userId"] for m in by_name["members"]} == devs
    assert by_id["total"] == 1 and [m["userId"] for m in by_id["members"]] == [viewer.user_id]
    assert members(api, owner, org, "?role=developer")["total"] == 2


def test_members_filter_by_an_unknown_role_is_404(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    problem(api.get("/api/members?role=Wizard", owner, org), 404, "role_not_found")


@BOTH_STORES
def test_members_search_matches_email_or_name_case_insensitively(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    named = User(f"u-{uuid4().hex[:10]}", f"plain.{uuid4().hex[:8]}@example.com", "Zebulon Quux")
    alice, _, _ = join_by_link(api, org, owner, [api.user("alice"), api.user("bob"), named])

    by_email = members(api, owner, org, f"?q={alice.email.split('@')[0].upper()}")
    by_name = members(api, owner, org, "?q=zebulon%20QUUX")
    nobody = members(api, owner, org, "?q=no-such-person")

    assert by_email["total"] == 1 and [m["userId"] for m in by_email["members"]] == [alice.user_id]
    assert by_name["total"] == 1 and [m["userId"] for m in by_name["members"]] == [named.user_id]
    assert nobody == {"members": [], "total": 0, "nextCursor": None}


@BOTH_STORES
def test_members_search_matches_underscores_in_emails_literally(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    ada = User(f"u-{uuid4().hex[:10]}", f"ada_lovelace.{uuid4().hex[:8]}@example.com", "Ada")
    join_by_link(api, org, owner, [ada])

    found = members(api, owner, org, "?q=ada_lovelace")

    assert found["total"] == 1 and [m["userId"] for m in found["members"]] == [ada.user_id]


def test_members_bad_cursor_is_400_invalid_cursor(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    # garbage, a one-value list, a list whose first value is not a timestamp
    for cursor in ["not-a-cursor", "WyJ4Il0", "WyJub3QtYS1kYXRlIiwgIngiXQ"]:
        problem(api.get(f"/api/members?cursor={cursor}", owner, org), 400, "invalid_cursor")


# -- POST /api/members/invite ----------------------------------------------------------------------------------
def test_invite_returns_201_with_the_pending_invitation_expiring_in_7_days(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    response = invite(api, owner, org, "  New.Person@Example.COM ", "Developer")

    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) >= INVITATION_FIELDS
    assert body["email"] == "new.person@example.com" and body["status"] == "pending"
    assert body["role"]["name"] == "Developer" and body["role"]["id"] == api.role_id(org, "Developer", owner)
    assert body["invitedBy"] == {"userId": owner.user_id, "email": owner.email}
    assert when(body["expiresAt"]) - when(body["createdAt"]) == timedelta(days=7)


def test_invite_honours_expires_in_days_from_1_to_30(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    for days in [1, 30]:
        response = invite(api, owner, org, api.user("x").email, expiresInDays=days)
        assert response.status_code == 201, response.json
        assert when(response.json["expiresAt"]) - when(response.json["createdAt"]) == timedelta(days=days)


def test_invite_refuses_a_malformed_email_with_a_per_field_error(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    for email in ["not-an-email", "two@@example.com", "no-domain@", "a b@example.com"]:
        body = problem(invite(api, owner, org, email), 422, "invalid_value")  # the domain's e-mail rule
        assert list(body["errors"]) == ["email"] and body["errors"]["email"], email
    body = problem(invite(api, owner, org, ""), 422, "validation_failed")  # the schema's length rule
    assert list(body["errors"]) == ["email"]
    assert api.get("/api/invitations?status=all", owner, org).json["total"] == 0


def test_invite_refuses_a_missing_email_with_a_per_field_error(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    response = api.post("/api/members/invite", owner, org, json={"roleId": api.role_id(org, "Viewer", owner)})

    assert problem(response, 422, "validation_failed")["errors"]["email"]


def test_invite_refuses_unknown_fields(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    response = invite(api, owner, org, api.user("x").email, isAdmin=True)

    assert list(problem(response, 422, "validation_failed")["errors"]) == ["isAdmin"]


def test_invite_refuses_wrong_types_naming_each_field(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    response = api.post(
        "/api/members/invite", owner, org, json={"email": 42, "roleId": "not-a-uuid", "expiresInDays": "7"}
    )

    assert set(problem(response, 422, "validation_failed")["errors"]) == {"email", "roleId", "expiresInDays"}
    body = {"email": api.user().email, "roleId": api.role_id(org, "Viewer", owner), "expiresInDays": True}
    boolean = api.post("/api/members/invite", owner, org, json=body)
    assert list(problem(boolean, 422, "validation_failed")["errors"]) == ["expiresInDays"]


def test_invite_refuses_expiry_outside_1_to_30_days(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    for days in [0, 31, -1]:
        response = invite(api, owner, org, api.user("x").email, expiresInDays=days)
        assert list(problem(response, 422, "validation_failed")["errors"]) == ["expiresInDays"], days


def test_invite_of_an_existing_member_is_409_already_member(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev = api.join(org, owner, "Developer", "dev")

    problem(invite(api, owner, org, dev.email.upper()), 409, "already_member")
    problem(invite(api, owner, org, owner.email), 409, "already_member")


def test_invite_of_an_already_invited_email_is_409_already_invited(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    email = api.user("x").email
    assert invite(api, owner, org, email).status_code == 201

    problem(invite(api, owner, org, email.upper(), "Developer"), 409, "already_invited")


def test_invite_with_an_unknown_role_is_404_role_not_found(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    response = api.post("/api/members/invite", owner, org, json={"email": api.user().email, "roleId": str(uuid4())})

    problem(response, 404, "role_not_found")


def test_invite_with_the_owner_role_is_403_owner_role_not_assignable(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    problem(invite(api, owner, org, api.user().email, "Owner"), 403, "owner_role_not_assignable")


def test_invite_with_a_role_the_inviter_lacks_permissions_of_is_403_privilege_escalation(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    created = api.post(
        "/api/roles",
        owner,
        org,
        json={"name": "Recruiter", "description": "Hires", "permissionIds": ["manage:members"]},
    )
    assert created.status_code == 201, created.json
    recruiter = api.join(org, owner, "Recruiter", "recruiter")

    problem(invite(api, recruiter, org, api.user().email, "Developer"), 403, "privilege_escalation")
    problem(invite(api, recruiter, org, api.user().email, "Admin"), 403, "privilege_escalation")
    assert invite(api, recruiter, org, api.user().email, "Recruiter").status_code == 201


def test_invite_by_a_viewer_is_403_missing_permission_naming_manage_members(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer = api.join(org, owner, "Viewer", "viewer")

    body = problem(invite(api, viewer, org, api.user().email), 403, "missing_permission")

    assert body["permission"] == "manage:members" and "manage:members" in body["detail"]


def test_invite_by_a_non_member_is_403_not_a_member(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    stranger = api.user("stranger")

    body = {"email": api.user().email, "roleId": api.role_id(org, "Viewer", owner)}
    problem(api.post("/api/members/invite", stranger, org, json=body), 403, "not_a_member")


# -- PUT /api/members/{id}/role ---------------------------------------------------------------------------------
def test_change_role_returns_200_with_the_member_in_the_new_role(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev = api.join(org, owner, "Developer", "dev")
    dev_id = api.member_id(org, dev, owner)

    response = api.put(f"/api/members/{dev_id}/role", owner, org, json={"roleId": api.role_id(org, "Admin", owner)})

    assert response.status_code == 200, response.json
    assert set(response.json) == {"message", "member"} and response.json["message"]
    member = response.json["member"]
    assert set(member) == MEMBER_FIELDS and member["id"] == dev_id and member["userId"] == dev.user_id
    assert member["role"]["name"] == "Admin" and "manage:members" in member["role"]["permissions"]
    assert role_of(api, org, dev, owner) == "Admin"


def test_change_role_of_the_owner_is_409_owner_role_cannot_change(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")
    owner_id = api.member_id(org, owner, owner)
    viewer_role = {"roleId": api.role_id(org, "Viewer", owner)}

    problem(api.put(f"/api/members/{owner_id}/role", admin, org, json=viewer_role), 409, "owner_role_cannot_change")
    problem(api.put(f"/api/members/{owner_id}/role", owner, org, json=viewer_role), 409, "owner_role_cannot_change")
    assert role_of(api, org, owner, owner) == "Owner"


def test_change_role_of_an_unknown_member_is_404(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    body = {"roleId": api.role_id(org, "Viewer", owner)}

    problem(api.put(f"/api/members/{uuid4()}/role", owner, org, json=body), 404, "member_not_found")
    problem(api.put("/api/members/not-a-uuid/role", owner, org, json=body), 404, "not_found")


def test_change_role_to_an_unknown_role_is_404_role_not_found(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev = api.join(org, owner, "Developer", "dev")

    response = api.put(f"/api/members/{api.member_id(org, dev, owner)}/role", owner, org, json={"roleId": str(uuid4())})

    problem(response, 404, "role_not_found")


def test_a_demoted_admin_is_refused_on_the_very_next_invite(api: ApiClient, second_api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")
    # The admin works through a second process, which now has the organization in its caches.
    assert invite(second_api, admin, org, api.user().email).status_code == 201
    assert second_api.get("/api/invitations", admin, org).status_code == 200

    demoted = api.put(
        f"/api/members/{api.member_id(org, admin, owner)}/role",
        owner,
        org,
        json={"roleId": api.role_id(org, "Viewer", owner)},
    )
    assert demoted.status_code == 200, demoted.json

    # The invite alone cannot catch a stale read model: the aggregate checks manage:members itself. So also
    # look at what authorizes reads. If the 200 came before the read model applied the demotion, the record
    # still says Admin here; if the second process answered from what it read before the demotion (a cached
    # aggregate or member record, a lagging read model), its GET /api/invitations would be 200, not 403.
    record = members_reads.member_for_user(api.services.read_db, UUID(org), admin.user_id)
    assert record is not None and record.role.name == "Viewer" and MANAGE_MEMBERS not in record.role.permissions
    problem(second_api.get("/api/invitations", admin, org), 403, "missing_permission")
    body = problem(invite(second_api, admin, org, api.user().email), 403, "missing_permission")
    assert body["permission"] == "manage:members"


# -- DELETE /api/members/{id} -----------------------------------------------------------------------------------
def test_remove_member_returns_200_and_the_member_is_gone_from_the_list(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")
    dev = api.join(org, owner, "Developer", "dev")

    response = api.delete(f"/api/members/{api.member_id(org, dev, owner)}", owner, org)

    assert response.status_code == 200 and set(response.json) == {"message"} and response.json["message"]
    listed = members(api, admin, org)
    assert listed["total"] == 2 and dev.user_id not in {m["userId"] for m in listed["members"]}


def test_remove_the_owner_is_409_owner_cannot_be_removed(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")

    problem(api.delete(f"/api/members/{api.member_id(org, owner, admin)}", admin, org), 409, "owner_cannot_be_removed")


def test_remove_yourself_is_409_cannot_remove_yourself(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")

    problem(api.delete(f"/api/members/{api.member_id(org, admin, admin)}", admin, org), 409, "cannot_remove_yourself")


def test_remove_an_unknown_member_is_404(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    problem(api.delete(f"/api/members/{uuid4()}", owner, org), 404, "member_not_found")
    problem(api.delete("/api/members/12345", owner, org), 404, "not_found")


def test_remove_member_by_a_viewer_is_403_missing_permission(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer = api.join(org, owner, "Viewer", "viewer")
    dev = api.join(org, owner, "Developer", "dev")

    body = problem(api.delete(f"/api/members/{api.member_id(org, dev, owner)}", viewer, org), 403, "missing_permission")
    assert body["permission"] == "manage:members"


def test_a_removed_member_is_refused_on_the_very_next_request(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")
    assert api.get("/api/members", admin, org).status_code == 200

    assert api.delete(f"/api/members/{api.member_id(org, admin, owner)}", owner, org).status_code == 200

    problem(api.get("/api/members", admin, org), 403, "not_a_member")
    body = {"email": api.user().email, "roleId": api.role_id(org, "Viewer", owner)}
    problem(api.post("/api/members/invite", admin, org, json=body), 403, "not_a_member")


# -- POST /api/members/leave ------------------------------------------------------------------------------------
def test_leave_returns_200_and_the_member_is_gone(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev = api.join(org, owner, "Developer", "dev")

    response = api.post("/api/members/leave", dev, org)

    assert response.status_code == 200 and set(response.json) == {"message"} and response.json["message"]
    assert [m["userId"] for m in members(api, owner, org)["members"]] == [owner.user_id]
    problem(api.get("/api/members", dev, org), 403, "not_a_member")


def test_the_owner_cannot_leave(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    problem(api.post("/api/members/leave", owner, org), 409, "owner_cannot_leave")
    assert members(api, owner, org)["total"] == 1


# -- POST /api/members/{id}/transfer-ownership ------------------------------------------------------------------
def test_transfer_ownership_makes_the_old_owner_an_admin(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev = api.join(org, owner, "Developer", "dev")

    response = api.post(f"/api/members/{api.member_id(org, dev, owner)}/transfer-ownership", owner, org)

    assert response.status_code == 200 and set(response.json) == {"message"} and response.json["message"]
    assert role_of(api, org, owner, dev) == "Admin" and role_of(api, org, dev, owner) == "Owner"
    assert api.post("/api/members/leave", owner, org).status_code == 200
    problem(api.post("/api/members/leave", dev, org), 409, "owner_cannot_leave")


def test_transfer_ownership_by_anyone_but_the_owner_is_403_owner_only(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")
    dev = api.join(org, owner, "Developer", "dev")

    response = api.post(f"/api/members/{api.member_id(org, dev, admin)}/transfer-ownership", admin, org)

    problem(response, 403, "owner_only")
    assert role_of(api, org, owner, admin) == "Owner"


def test_transfer_ownership_to_an_unknown_member_is_404(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    problem(api.post(f"/api/members/{uuid4()}/transfer-ownership", owner, org), 404, "member_not_found")


# -- 429: at most MEMBERSHIP_INVITES_PER_HOUR invitations (and resends) per actor an hour ---------------------------
class TestInvitationRateLimit:
    @pytest.fixture
    def api_settings(self, store: str, settings_for: Callable[..., Settings]) -> Settings:
        return settings_for(store, MEMBERSHIP_JWT_SECRET=JWT_SECRET, MEMBERSHIP_INVITES_PER_HOUR="3")

    @staticmethod
    def assert_rate_limited(response: TestResponse) -> None:
        problem(response, 429, "rate_limited")
        retry_after = response.headers["Retry-After"]
        assert retry_after.isdigit() and 1 <= int(retry_after) <= 3600, retry_after

    def test_the_invitation_over_the_hourly_limit_is_429_with_retry_after(self, api: ApiClient) -> None:
        owner = api.user("owner")
        org = api.new_org(owner)
        for _ in range(3):
            assert invite(api, owner, org, api.user().email).status_code == 201

        self.assert_rate_limited(invite(api, owner, org, api.user().email))
        admin_invites = api.get("/api/invitations?status=all", owner, org).json
        assert admin_invites["total"] == 3

    def test_the_limit_is_per_actor_and_frees_up_after_an_hour(self, api: ApiClient) -> None:
        owner = api.user("owner")
        org = api.new_org(owner)
        admin = api.join(org, owner, "Admin", "admin")  # the owner's 1st invitation
        for _ in range(2):
            assert invite(api, owner, org, api.user().email).status_code == 201
        self.assert_rate_limited(invite(api, owner, org, api.user().email))

        assert invite(api, admin, org, api.user().email).status_code == 201
        api.clock.advance(hours=1, minutes=1)
        assert invite(api, owner, org, api.user().email).status_code == 201

    def test_resends_count_towards_the_limit(self, api: ApiClient) -> None:
        owner = api.user("owner")
        org = api.new_org(owner)
        first = invite(api, owner, org, api.user().email).json
        assert invite(api, owner, org, api.user().email).status_code == 201
        assert api.post(f"/api/invitations/{first['id']}/resend", owner, org, json={}).status_code == 200

        self.assert_rate_limited(invite(api, owner, org, api.user().email))
        self.assert_rate_limited(api.post(f"/api/invitations/{first['id']}/resend", owner, org, json={}))
