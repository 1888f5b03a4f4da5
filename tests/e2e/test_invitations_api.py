"""Invitations, invite links and joining over HTTP, on SQLite and PostgreSQL.

`/api/invitations` (list, cancel, resend), `/api/invite-links` (create, list, delete)
and `/api/auth/accept-invite[-link]`: every success and every refusal of issue 4,
plus read-your-writes (a command's effect is in the very next GET by someone else).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from werkzeug.test import TestResponse

from tests.e2e.conftest import BOTH_STORES, ApiClient, User, problem

INVITATION_FIELDS = {"id", "email", "status", "role", "invitedBy", "expiresAt", "createdAt"}
LINK_FIELDS = {"id", "code", "url", "role", "maxUses", "useCount", "expiresAt", "createdBy", "createdAt"}
MEMBER_FIELDS = {"id", "userId", "email", "name", "role", "joinedAt", "lastActiveAt"}
PUBLIC_URL = "https://ocore.example.com"


# -- arranging -------------------------------------------------------------------------------------------------
def invite(api: ApiClient, inviter: User, org: str, invitee: User, role: str = "Viewer", **extra: Any) -> str:
    """Invite `invitee`; returns the invitation id."""
    body = {"email": invitee.email, "roleId": api.role_id(org, role, inviter), **extra}
    response = api.post("/api/members/invite", inviter, org, json=body)
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def accept(api: ApiClient, user: User | None, token: str, **kw: Any) -> TestResponse:
    return api.post("/api/auth/accept-invite", user, json={"token": token}, **kw)


def invitations(api: ApiClient, viewer: User, org: str, query: str = "") -> dict[str, Any]:
    response = api.get(f"/api/invitations{query}", viewer, org)
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def invitation(api: ApiClient, viewer: User, org: str, invitation_id: str) -> dict[str, Any]:
    listed = invitations(api, viewer, org, "?status=all&limit=200")["invitations"]
    return next(i for i in listed if i["id"] == invitation_id)  # type: ignore[no-any-return]


def new_link(api: ApiClient, owner: User, org: str, role: str = "Viewer", **extra: Any) -> dict[str, Any]:
    response = api.post("/api/invite-links", owner, org, json={"roleId": api.role_id(org, role, owner), **extra})
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def redeem(api: ApiClient, user: User | None, code: str, **kw: Any) -> TestResponse:
    return api.post("/api/auth/accept-invite-link", user, json={"code": code}, **kw)


def links(api: ApiClient, viewer: User, org: str) -> dict[str, Any]:
    response = api.get("/api/invite-links", viewer, org)
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def member_user_ids(api: ApiClient, viewer: User, org: str) -> set[str]:
    return {m["userId"] for m in api.get("/api/members?limit=200", viewer, org).json["members"]}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- GET /api/invitations --------------------------------------------------------------------------------------
@BOTH_STORES
def test_invitations_list_pending_ones_newest_first_by_default(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    first, second = api.user("first"), api.user("second")
    first_id = invite(api, owner, org, first)
    second_id = invite(api, owner, org, second, "Developer")

    body = invitations(api, owner, org)

    assert body["total"] == 2 and body["nextCursor"] is None
    assert [i["id"] for i in body["invitations"]] == [second_id, first_id]
    newest = body["invitations"][0]
    assert set(newest) >= INVITATION_FIELDS
    assert newest["email"] == second.email and newest["status"] == "pending"
    assert newest["role"]["name"] == "Developer" and newest["invitedBy"] == {
        "userId": owner.user_id,
        "email": owner.email,
    }


def test_listing_invitations_needs_manage_members(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer = api.join(org, owner, "Viewer", "viewer")
    dev = api.join(org, owner, "Developer", "dev")
    admin = api.join(org, owner, "Admin", "admin")

    for refused in (viewer, dev):
        body = problem(api.get("/api/invitations", refused, org), 403, "missing_permission")
        assert body["permission"] == "manage:members"
    assert invitations(api, admin, org)["total"] == 0


def test_invitations_filter_by_status(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    short, pending, accepted, cancelled = (api.user(label) for label in ("short", "pending", "accepted", "cancelled"))
    short_id = invite(api, owner, org, short, expiresInDays=1)
    pending_id = invite(api, owner, org, pending)
    accepted_id = invite(api, owner, org, accepted)
    assert accept(api, accepted, api.invitation_token(org, accepted_id)).status_code == 200
    cancelled_id = invite(api, owner, org, cancelled)
    assert api.delete(f"/api/invitations/{cancelled_id}", owner, org).status_code == 200
    api.clock.advance(days=2)

    def listed(status: str) -> list[tuple[str, str]]:
        body = invitations(api, owner, org, f"?status={status}")
        assert body["total"] == len(body["invitations"])
        return [(i["id"], i["status"]) for i in body["invitations"]]

    assert listed("pending") == [(pending_id, "pending")]
    assert listed("expired") == [(short_id, "expired")]
    assert listed("accepted") == [(accepted_id, "accepted")]
    assert listed("cancelled") == [(cancelled_id, "cancelled")]
    assert set(listed("all")) == {
        (short_id, "expired"),
        (pending_id, "pending"),
        (accepted_id, "accepted"),
        (cancelled_id, "cancelled"),
    }


def test_invitations_invalid_status_is_422(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    body = problem(api.get("/api/invitations?status=open", owner, org), 422, "validation_failed")

    assert list(body["errors"]) == ["status"]


def test_invitations_pages_cover_every_invitation_exactly_once(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    created = [invite(api, owner, org, api.user()) for _ in range(5)]

    seen: list[str] = []
    sizes: list[int] = []
    query = "?limit=2"
    while True:
        page = invitations(api, owner, org, query)
        assert page["total"] == 5
        seen += [i["id"] for i in page["invitations"]]
        sizes.append(len(page["invitations"]))
        if page["nextCursor"] is None:
            break
        query = f"?limit=2&cursor={page['nextCursor']}"

    assert sizes == [2, 2, 1] and seen == created[::-1]
    problem(api.get("/api/invitations?cursor=garbage", owner, org), 400, "invalid_cursor")
    problem(api.get("/api/invitations?limit=201", owner, org), 422, "validation_failed")


# -- DELETE /api/invitations/{id} ------------------------------------------------------------------------------
def test_cancel_invitation_returns_200_and_it_is_no_longer_pending(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitation_id = invite(api, owner, org, api.user())

    response = api.delete(f"/api/invitations/{invitation_id}", owner, org)

    assert response.status_code == 200 and set(response.json) == {"message"} and response.json["message"]
    assert invitations(api, owner, org)["total"] == 0
    assert invitation(api, owner, org, invitation_id)["status"] == "cancelled"


def test_cancel_twice_is_409_invitation_not_pending(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitation_id = invite(api, owner, org, api.user())
    assert api.delete(f"/api/invitations/{invitation_id}", owner, org).status_code == 200

    problem(api.delete(f"/api/invitations/{invitation_id}", owner, org), 409, "invitation_not_pending")


def test_cancel_an_unknown_invitation_is_404(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    problem(api.delete(f"/api/invitations/{uuid4()}", owner, org), 404, "invitation_not_found")
    problem(api.delete("/api/invitations/not-a-uuid", owner, org), 404, "not_found")


def test_cancel_by_a_viewer_is_403_missing_permission(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer = api.join(org, owner, "Viewer", "viewer")
    invitation_id = invite(api, owner, org, api.user())

    body = problem(api.delete(f"/api/invitations/{invitation_id}", viewer, org), 403, "missing_permission")

    assert body["permission"] == "manage:members"
    assert invitation(api, owner, org, invitation_id)["status"] == "pending"


# -- POST /api/invitations/{id}/resend -------------------------------------------------------------------------
def test_resend_gives_a_new_expiry_and_a_new_token_replacing_the_old_one(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitee = api.user("invitee")
    invitation_id = invite(api, owner, org, invitee)
    before = invitation(api, owner, org, invitation_id)
    old_token = api.invitation_token(org, invitation_id)
    api.clock.advance(days=1)

    response = api.post(f"/api/invitations/{invitation_id}/resend", owner, org, json={})

    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) >= INVITATION_FIELDS and body["id"] == invitation_id and body["status"] == "pending"
    assert body["email"] == invitee.email and body["createdAt"] == before["createdAt"]
    assert when(body["expiresAt"]) - when(before["expiresAt"]) >= timedelta(days=1)
    assert body["resendCount"] == 1
    new_token = api.invitation_token(org, invitation_id)
    assert new_token != old_token
    problem(accept(api, invitee, old_token), 410, "invitation_replaced")  # a real token a resend replaced: said so
    assert accept(api, invitee, new_token).status_code == 200


def test_resend_an_accepted_or_cancelled_invitation_is_409(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    joined = api.user("joined")
    accepted_id = invite(api, owner, org, joined)
    assert accept(api, joined, api.invitation_token(org, accepted_id)).status_code == 200
    cancelled_id = invite(api, owner, org, api.user())
    assert api.delete(f"/api/invitations/{cancelled_id}", owner, org).status_code == 200

    problem(api.post(f"/api/invitations/{accepted_id}/resend", owner, org, json={}), 409, "invitation_not_pending")
    problem(api.post(f"/api/invitations/{cancelled_id}/resend", owner, org, json={}), 409, "invitation_not_pending")


def test_resend_an_unknown_invitation_is_404(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    problem(api.post(f"/api/invitations/{uuid4()}/resend", owner, org, json={}), 404, "invitation_not_found")


# -- POST /api/auth/accept-invite ------------------------------------------------------------------------------
def test_accept_invite_returns_the_organization_and_the_new_member_without_an_org_header(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev = api.user("dev")
    invitation_id = invite(api, owner, org, dev, "Developer")

    response = accept(api, dev, api.invitation_token(org, invitation_id))

    assert response.status_code == 200, response.json
    assert set(response.json) == {"organizationId", "member"} and response.json["organizationId"] == org
    member = response.json["member"]
    assert set(member) == MEMBER_FIELDS
    assert (member["userId"], member["email"], member["name"]) == (dev.user_id, dev.email, dev.name)
    assert member["role"]["name"] == "Developer"
    assert invitation(api, owner, org, invitation_id)["status"] == "accepted"
    assert dev.user_id in member_user_ids(api, owner, org)


def test_accept_invite_with_another_email_is_403_and_the_invitation_stays_pending(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitee, intruder = api.user("invitee"), api.user("intruder")
    invitation_id = invite(api, owner, org, invitee)
    token = api.invitation_token(org, invitation_id)

    problem(accept(api, intruder, token), 403, "invitation_email_mismatch")

    assert invitation(api, owner, org, invitation_id)["status"] == "pending"
    assert intruder.user_id not in member_user_ids(api, owner, org)
    assert accept(api, invitee, token).status_code == 200


@BOTH_STORES
def test_accept_an_expired_invitation_is_410_invitation_expired(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitee = api.user("invitee")
    invitation_id = invite(api, owner, org, invitee)
    api.clock.advance(days=8)

    problem(accept(api, invitee, api.invitation_token(org, invitation_id)), 410, "invitation_expired")
    assert invitee.user_id not in member_user_ids(api, owner, org)


def test_accept_a_cancelled_invitation_is_410_invitation_cancelled(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitee = api.user("invitee")
    invitation_id = invite(api, owner, org, invitee)
    token = api.invitation_token(org, invitation_id)
    assert api.delete(f"/api/invitations/{invitation_id}", owner, org).status_code == 200

    problem(accept(api, invitee, token), 410, "invitation_cancelled")


def test_accept_an_invitation_twice_is_410_invitation_already_accepted(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitee = api.user("invitee")
    token = api.invitation_token(org, invite(api, owner, org, invitee))
    assert accept(api, invitee, token).status_code == 200

    problem(accept(api, invitee, token), 410, "invitation_already_accepted")


def test_accept_invite_with_a_token_lacking_the_email_claim_is_403_email_claim_required(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitee = api.user("invitee")
    invitation_id = invite(api, owner, org, invitee)
    no_email = {"Authorization": f"Bearer {api.token(invitee, email=None)}"}

    problem(accept(api, None, api.invitation_token(org, invitation_id), headers=no_email), 403, "email_claim_required")
    assert invitation(api, owner, org, invitation_id)["status"] == "pending"


def test_accept_invite_with_a_garbage_token_is_404_invalid_invitation_token(api: ApiClient) -> None:
    user = api.user()

    problem(accept(api, user, "garbage"), 404, "invalid_invitation_token")
    problem(accept(api, user, "A" * 60), 404, "invalid_invitation_token")


# -- /api/invite-links -----------------------------------------------------------------------------------------
def test_create_invite_link_returns_201_with_code_and_url(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev_role = api.role_id(org, "Developer", owner)

    response = api.post("/api/invite-links", owner, org, json={"roleId": dev_role, "maxUses": 5, "expiresInDays": 30})

    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == LINK_FIELDS and body["code"]
    assert body["url"] == f"{PUBLIC_URL}/join/{body['code']}"
    assert body["role"]["id"] == dev_role and body["role"]["name"] == "Developer"
    assert (body["maxUses"], body["useCount"]) == (5, 0)
    assert body["createdBy"] == {"userId": owner.user_id, "email": owner.email}
    assert when(body["expiresAt"]) - when(body["createdAt"]) == timedelta(days=30)


def test_create_invite_link_refuses_negative_max_uses_and_out_of_range_days(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    role = api.role_id(org, "Viewer", owner)

    for bad, field in [
        ({"maxUses": -1}, "maxUses"),
        ({"expiresInDays": 366}, "expiresInDays"),
        ({"expiresInDays": 0}, "expiresInDays"),
    ]:
        response = api.post("/api/invite-links", owner, org, json={"roleId": role, **bad})
        assert list(problem(response, 422, "validation_failed")["errors"]) == [field], bad
    assert links(api, owner, org)["total"] == 0
    assert new_link(api, owner, org, expiresInDays=365)["maxUses"] == 0


def test_create_invite_link_by_a_viewer_is_403_missing_permission(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer = api.join(org, owner, "Viewer", "viewer")

    response = api.post("/api/invite-links", viewer, org, json={"roleId": api.role_id(org, "Viewer", owner)})

    assert problem(response, 403, "missing_permission")["permission"] == "manage:members"


def test_invite_links_list_shows_codes_and_hides_deleted_links(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")
    kept = new_link(api, owner, org, "Developer", maxUses=3)
    deleted = new_link(api, owner, org)
    assert api.delete(f"/api/invite-links/{deleted['id']}", owner, org).status_code == 200

    body = links(api, admin, org)

    assert body["total"] == 1 and body["inviteLinks"] == [kept]


def test_listing_invite_links_needs_manage_members(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    dev = api.join(org, owner, "Developer", "dev")
    code = new_link(api, owner, org)["code"]

    response = api.get("/api/invite-links", dev, org)

    assert problem(response, 403, "missing_permission")["permission"] == "manage:members"
    assert code not in response.get_data(as_text=True)


def test_delete_invite_link_returns_200_and_a_second_delete_or_unknown_id_is_404(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    link = new_link(api, owner, org)

    response = api.delete(f"/api/invite-links/{link['id']}", owner, org)

    assert response.status_code == 200 and set(response.json) == {"message"} and response.json["message"]
    problem(api.delete(f"/api/invite-links/{link['id']}", owner, org), 404, "invite_link_not_found")
    problem(api.delete(f"/api/invite-links/{uuid4()}", owner, org), 404, "invite_link_not_found")


# -- POST /api/auth/accept-invite-link -------------------------------------------------------------------------
def test_accept_invite_link_joins_with_the_links_role_and_counts_the_use(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    link = new_link(api, owner, org, "Developer", maxUses=2)
    newcomer = api.user("newcomer")

    response = redeem(api, newcomer, link["code"])

    assert response.status_code == 200, response.json
    assert set(response.json) == {"organizationId", "member"} and response.json["organizationId"] == org
    member = response.json["member"]
    assert set(member) == MEMBER_FIELDS and member["userId"] == newcomer.user_id and member["email"] == newcomer.email
    assert member["role"]["name"] == "Developer"
    assert links(api, owner, org)["inviteLinks"][0]["useCount"] == 1


def test_accept_a_used_up_invite_link_is_410_invite_link_used_up(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    link = new_link(api, owner, org, maxUses=1)
    assert redeem(api, api.user("first"), link["code"]).status_code == 200
    late = api.user("late")

    problem(redeem(api, late, link["code"]), 410, "invite_link_used_up")
    assert late.user_id not in member_user_ids(api, owner, org)


def test_accept_an_expired_invite_link_is_410_invite_link_expired(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    link = new_link(api, owner, org)
    api.clock.advance(days=8)

    problem(redeem(api, api.user(), link["code"]), 410, "invite_link_expired")


def test_accept_a_deleted_invite_link_is_410_invite_link_deleted(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    link = new_link(api, owner, org)
    assert api.delete(f"/api/invite-links/{link['id']}", owner, org).status_code == 200

    problem(redeem(api, api.user(), link["code"]), 410, "invite_link_deleted")


def test_accept_invite_link_twice_is_409_then_410_after_leaving(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    link = new_link(api, owner, org)
    user = api.user("user")
    assert redeem(api, user, link["code"]).status_code == 200

    problem(redeem(api, user, link["code"]), 409, "already_member")
    assert api.post("/api/members/leave", user, org).status_code == 200
    problem(redeem(api, user, link["code"]), 410, "invite_link_already_used")
    assert user.user_id not in member_user_ids(api, owner, org)


def test_accept_invite_link_with_a_bad_code_is_404_invalid_invite_link_code(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    code = new_link(api, owner, org)["code"]
    user = api.user()

    problem(redeem(api, user, "no-such-code"), 404, "invalid_invite_link_code")
    problem(redeem(api, user, code[:-2] + ("AA" if code[-2:] != "AA" else "BB")), 404, "invalid_invite_link_code")


def test_accept_invite_link_with_a_token_lacking_the_email_claim_is_403(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    link = new_link(api, owner, org)
    user = api.user()
    no_email = {"Authorization": f"Bearer {api.token(user, email=None)}"}

    problem(redeem(api, None, link["code"], headers=no_email), 403, "email_claim_required")
    assert links(api, owner, org)["inviteLinks"][0]["useCount"] == 0


# -- read-your-writes ------------------------------------------------------------------------------------------
def test_every_command_is_visible_to_the_next_get_by_another_member(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")
    invitee, cancelled, joiner = api.user("invitee"), api.user("cancelled"), api.user("joiner")

    invited_id = invite(api, owner, org, invitee)
    assert [i["id"] for i in invitations(api, admin, org)["invitations"]] == [invited_id]

    cancelled_id = invite(api, owner, org, cancelled)
    assert api.delete(f"/api/invitations/{cancelled_id}", owner, org).status_code == 200
    assert [i["id"] for i in invitations(api, admin, org, "?status=cancelled")["invitations"]] == [cancelled_id]

    api.clock.advance(hours=1)
    resent = api.post(f"/api/invitations/{invited_id}/resend", owner, org, json={}).json
    assert invitation(api, admin, org, invited_id)["expiresAt"] == resent["expiresAt"]

    assert accept(api, invitee, api.invitation_token(org, invited_id)).status_code == 200
    assert invitation(api, admin, org, invited_id)["status"] == "accepted"
    assert invitee.user_id in member_user_ids(api, admin, org)

    link = new_link(api, owner, org)
    assert [item["id"] for item in links(api, admin, org)["inviteLinks"]] == [link["id"]]
    assert redeem(api, joiner, link["code"]).status_code == 200
    assert links(api, admin, org)["inviteLinks"][0]["useCount"] == 1
    assert joiner.user_id in member_user_ids(api, admin, org)

    assert api.delete(f"/api/invite-links/{link['id']}", owner, org).status_code == 200
    assert links(api, admin, org) == {"inviteLinks": [], "total": 0, "nextCursor": None}
