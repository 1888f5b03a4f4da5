"""Rate limits over HTTP: exact under parallel requests, within one app and across two app
instances (like two API processes) on one store.

Invitations and resends (MEMBERSHIP_INVITES_PER_HOUR), new organizations
(MEMBERSHIP_ORGANIZATIONS_PER_HOUR) and failed accepts (MEMBERSHIP_ACCEPT_FAILURES in
MEMBERSHIP_ACCEPT_FAILURE_WINDOW_SECONDS): 429 `rate_limited` with Retry-After.

Parallel requests race for the slots in the store, which serialises them (SQLite's BEGIN IMMEDIATE,
PostgreSQL's advisory lock): those tests run on both stores (BOTH_STORES). The others are about which
requests take a slot and which give it back, on SQLite; the slots' own rules (the window over stored
timestamps, giving a slot back, racing pools) are tested on both stores in
tests/integration/test_rate_limit_slots.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from werkzeug.test import TestResponse

from service.settings import Settings
from tests.e2e.conftest import BOTH_STORES, JWT_SECRET, ApiClient, User, problem

LIMITS = {
    "MEMBERSHIP_INVITES_PER_HOUR": "10",
    "MEMBERSHIP_ORGANIZATIONS_PER_HOUR": "3",
    "MEMBERSHIP_ACCEPT_FAILURES": "4",
    "MEMBERSHIP_ACCEPT_FAILURE_WINDOW_SECONDS": "600",
}


@pytest.fixture
def api_settings(store: str, settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(store, MEMBERSHIP_JWT_SECRET=JWT_SECRET, **LIMITS)


def in_parallel(calls: list[Callable[[], TestResponse]]) -> list[int]:
    """Every call at once (released together by a barrier); their status codes."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], TestResponse]) -> int:
        barrier.wait()
        return call().status_code

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def own_client(api: ApiClient) -> ApiClient:
    """A test client of the same app for one thread."""
    return ApiClient(api.client.application.test_client(), api.services, api.clock)


def invite(api: ApiClient, inviter: User, org: str, email: str, role: str | None = None) -> TestResponse:
    body = {"email": email, "roleId": role or api.role_id(org, "Viewer", inviter)}
    return api.post("/api/members/invite", inviter, org, json=body)


def assert_rate_limited(response: TestResponse, at_most_s: int) -> None:
    problem(response, 429, "rate_limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= at_most_s, retry_after


# -- invitations --------------------------------------------------------------------------------------------------
@BOTH_STORES
def test_parallel_invitations_from_one_app_never_exceed_the_limit(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    role = api.role_id(org, "Viewer", owner)
    clients = [own_client(api) for _ in range(16)]
    calls = [
        lambda c=c: c.post("/api/members/invite", owner, org, json={"email": api.user().email, "roleId": role})
        for c in clients
    ]

    statuses = in_parallel(calls)

    assert sorted(statuses) == [201] * 10 + [429] * 6
    assert api.get("/api/invitations?status=all", owner, org).json["total"] == 10


@BOTH_STORES
def test_parallel_invitations_through_two_app_instances_never_exceed_the_limit(
    api: ApiClient, second_api: ApiClient
) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    role = api.role_id(org, "Viewer", owner)
    clients = [own_client(api) if i % 2 else own_client(second_api) for i in range(16)]
    calls = [
        lambda c=c: c.post("/api/members/invite", owner, org, json={"email": api.user().email, "roleId": role})
        for c in clients
    ]

    statuses = in_parallel(calls)

    assert sorted(statuses) == [201] * 10 + [429] * 6
    assert api.get("/api/invitations?status=all", owner, org).json["total"] == 10
    assert_rate_limited(invite(second_api, owner, org, api.user().email), 3600)


def test_invitations_the_domain_refuses_use_none_of_the_allowance(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    invitee, role = api.user("invitee"), api.role_id(org, "Viewer", owner)
    assert invite(api, owner, org, invitee.email, role).status_code == 201
    for _ in range(5):  # 10 refusals: more than the 9 invitations left
        problem(invite(api, owner, org, invitee.email, role), 409, "already_invited")
        problem(invite(api, owner, org, owner.email, role), 409, "already_member")

    for _ in range(9):
        assert invite(api, owner, org, api.user().email, role).status_code == 201

    assert_rate_limited(invite(api, owner, org, api.user().email, role), 3600)


# -- organizations ------------------------------------------------------------------------------------------------
def test_creating_organizations_over_the_hourly_limit_is_429_with_retry_after(api: ApiClient) -> None:
    founder, other = api.user("founder"), api.user("other")
    for n in range(3):
        api.new_org(founder, f"Org {n}")

    assert_rate_limited(api.post("/api/organizations", founder, json={"name": "One too many"}), 3600)
    api.new_org(other)  # the limit is per user
    assert api.get("/api/organizations", founder).json["total"] == 3
    api.clock.advance(hours=1, seconds=1)
    api.new_org(founder, "Next hour")


@BOTH_STORES
def test_parallel_organization_creations_never_exceed_the_limit(api: ApiClient, second_api: ApiClient) -> None:
    founder = api.user("founder")
    clients = [own_client(api) if i % 2 else own_client(second_api) for i in range(10)]

    statuses = in_parallel([lambda c=c: c.post("/api/organizations", founder, json={"name": "Rush"}) for c in clients])

    assert sorted(statuses) == [201] * 3 + [429] * 7
    assert api.get("/api/organizations", founder).json["total"] == 3


def test_refused_organization_creations_use_none_of_the_allowance(api: ApiClient) -> None:
    founder = api.user("founder")
    for _ in range(5):
        problem(api.post("/api/organizations", founder, json={"name": "   "}), 422, "invalid_value")

    for n in range(3):
        api.new_org(founder, f"Org {n}")


# -- accepting invitations and links ------------------------------------------------------------------------------
def accept(api: ApiClient, user: User, token: str) -> TestResponse:
    return api.post("/api/auth/accept-invite", user, json={"token": token})


def redeem(api: ApiClient, user: User, code: str) -> TestResponse:
    return api.post("/api/auth/accept-invite-link", user, json={"code": code})


def invitation_for(api: ApiClient, owner: User, org: str, user: User) -> str:
    invited = invite(api, owner, org, user.email)
    assert invited.status_code == 201, invited.json
    return api.invitation_token(org, invited.json["id"])


def test_after_too_many_failed_accepts_even_a_valid_token_is_429_untried(api: ApiClient) -> None:
    owner, guesser = api.user("owner"), api.user("guesser")
    org = api.new_org(owner)
    token = invitation_for(api, owner, org, guesser)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    problem(accept(api, guesser, forged), 404, "invalid_invitation_token")
    problem(accept(api, guesser, "not-a-token"), 404, "invalid_invitation_token")
    problem(redeem(api, guesser, "not-a-code"), 404, "invalid_invite_link_code")  # links share the allowance
    problem(redeem(api, guesser, forged), 404, "invalid_invite_link_code")

    assert_rate_limited(accept(api, guesser, token), 600)
    assert_rate_limited(redeem(api, guesser, "not-a-code"), 600)
    assert api.get("/api/organizations", guesser).json["total"] == 0
    api.clock.advance(minutes=10, seconds=1)
    assert accept(api, guesser, token).status_code == 200


def test_successful_accepts_use_none_of_the_allowance_and_other_callers_are_unaffected(api: ApiClient) -> None:
    owner, joiner, guesser = api.user("owner"), api.user("joiner"), api.user("guesser")
    orgs = [api.new_org(owner, f"Org {n}") for n in range(3)]
    for _ in range(3):
        problem(accept(api, joiner, "not-a-token"), 404, "invalid_invitation_token")
    for org in orgs[:2]:
        assert accept(api, joiner, invitation_for(api, owner, org, joiner)).status_code == 200
    link = api.post("/api/invite-links", owner, orgs[2], json={"roleId": api.role_id(orgs[2], "Viewer", owner)})
    assert redeem(api, joiner, link.json["code"]).status_code == 200
    for _ in range(4):
        problem(accept(api, guesser, "not-a-token"), 404, "invalid_invitation_token")

    problem(accept(api, joiner, "not-a-token"), 404, "invalid_invitation_token")  # the 4th failure is still tried
    assert_rate_limited(accept(api, joiner, "not-a-token"), 600)
    assert_rate_limited(accept(api, guesser, "not-a-token"), 600)
    assert redeem(api, api.user("newcomer"), link.json["code"]).status_code == 200


def test_refusals_other_than_a_bad_token_are_not_counted(api: ApiClient) -> None:
    owner, invitee, stranger = api.user("owner"), api.user("invitee"), api.user("stranger")
    org = api.new_org(owner)
    token = invitation_for(api, owner, org, invitee)
    for _ in range(6):
        problem(accept(api, stranger, token), 403, "invitation_email_mismatch")

    problem(accept(api, stranger, "not-a-token"), 404, "invalid_invitation_token")
    assert accept(api, invitee, token).status_code == 200


@BOTH_STORES
def test_parallel_guesses_are_throttled_exactly(api: ApiClient, second_api: ApiClient) -> None:
    guesser = api.user("guesser")
    clients = [own_client(api) if i % 2 else own_client(second_api) for i in range(12)]

    statuses = in_parallel([lambda c=c: accept(c, guesser, "not-a-token") for c in clients])

    assert sorted(statuses) == [404] * 4 + [429] * 8
