"""Idempotency-Key on every command: a retry returns the first answer and changes nothing more.

The keys are claimed in the store (`api.idempotency_keys`: an insert that may conflict, and on PostgreSQL
a row lock), so claiming a key, a retry replaying what the first request kept, and a retry meeting a
request still running also run on PostgreSQL (BOTH_STORES). What the answer to a retry is, and whose key
it is, are decided by the API over what it read back: SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from api import commands, idempotency_keys
from projections.engine.runner import ProjectionRunner
from tests.e2e.conftest import BOTH_STORES, ApiClient, User, problem


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


@pytest.fixture
def team(api: ApiClient) -> tuple[User, str, str]:
    owner = api.user("owner")
    org = api.new_org(owner)
    return owner, org, api.role_id(org, "Viewer", owner)


@pytest.fixture
def stalled_read_models(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """The projection runner stops (as if its worker died); commands still save, then cannot confirm.

    Yields `resume`, which starts a new runner (called at the end if the test did not)."""
    monkeypatch.setattr(commands, "READ_YOUR_WRITES_TIMEOUT_S", 0.05)  # no runner: never confirmed
    stopped = api.services.runner
    assert stopped is not None
    stopped.stop()

    def resume() -> None:
        api.services.runner = ProjectionRunner(api.services.organizations, api.services.read_db)
        api.services.runner.start()

    yield resume
    if api.services.runner is stopped:
        resume()


def pending_emails(api: ApiClient, owner: User, org: str) -> list[str]:
    return [i["email"] for i in api.get("/api/invitations?status=pending", owner, org).json["invitations"]]


@BOTH_STORES
def test_the_same_key_and_body_returns_the_first_answer_and_invites_once(api: ApiClient, team) -> None:
    owner, org, viewer = team
    body = {"email": "once@example.com", "roleId": viewer}
    first = api.post("/api/members/invite", owner, org, json=body, headers=key("invite-1"))
    again = api.post("/api/members/invite", owner, org, json=body, headers=key("invite-1"))

    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert pending_emails(api, owner, org) == ["once@example.com"]


def test_a_refusal_is_the_answer_a_retry_gets_too(api: ApiClient, team) -> None:
    owner, org, viewer = team
    api.post("/api/members/invite", owner, org, json={"email": "dup@example.com", "roleId": viewer})
    body = {"email": "dup@example.com", "roleId": viewer}
    first = api.post("/api/members/invite", owner, org, json=body, headers=key("dup"))
    problem(first, 409, "already_invited")
    api.delete(f"/api/invitations/{api.get('/api/invitations', owner, org).json['invitations'][0]['id']}", owner, org)
    again = api.post("/api/members/invite", owner, org, json=body, headers=key("dup"))
    problem(again, 409, "already_invited")  # the first answer, though the invitation could be made now
    assert again.headers["Idempotent-Replayed"] == "true"


def test_the_same_key_with_another_body_is_refused(api: ApiClient, team) -> None:
    owner, org, viewer = team
    api.post("/api/members/invite", owner, org, json={"email": "a@example.com", "roleId": viewer}, headers=key("k"))
    other = api.post(
        "/api/members/invite", owner, org, json={"email": "b@example.com", "roleId": viewer}, headers=key("k")
    )
    problem(other, 409, "idempotency_key_reused")
    assert pending_emails(api, owner, org) == ["a@example.com"]


def test_keys_belong_to_one_caller_in_one_organization(api: ApiClient, team) -> None:
    owner, org, viewer = team
    admin = api.join(org, owner, "Admin", "admin")
    for user, email in ((owner, "x@example.com"), (admin, "y@example.com")):
        response = api.post(
            "/api/members/invite", user, org, json={"email": email, "roleId": viewer}, headers=key("same")
        )
        assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert sorted(pending_emails(api, owner, org)) == ["x@example.com", "y@example.com"]


def test_a_delete_retried_with_its_key_succeeds_again_instead_of_404(api: ApiClient, team) -> None:
    owner, org, _ = team
    member = api.join(org, owner, "Viewer")
    path = f"/api/members/{api.member_id(org, member, owner)}"
    first = api.delete(path, owner, org, headers=key("remove-1"))
    again = api.delete(path, owner, org, headers=key("remove-1"))
    assert first.status_code == again.status_code == 200 and again.json == first.json
    problem(api.delete(path, owner, org), 404, "member_not_found")  # without the key: a new request


def test_a_503_after_saving_names_what_was_saved_and_a_retry_completes_it(
    api: ApiClient, team, stalled_read_models: Callable[[], None]
) -> None:
    owner, org, viewer = team
    body = {"email": "late@example.com", "roleId": viewer}
    first = api.post("/api/members/invite", owner, org, json=body, headers=key("slow"))
    lagging = problem(first, 503, "read_model_lagging")
    assert lagging["saved"]["organizationId"] == org and lagging["saved"]["id"]
    assert "was saved" in lagging["detail"] and first.headers["Retry-After"]

    stalled_read_models()  # the worker is back
    again = api.post("/api/members/invite", owner, org, json=body, headers=key("slow"))

    assert again.status_code == 201 and again.json["id"] == lagging["saved"]["id"]
    assert pending_emails(api, owner, org) == ["late@example.com"]


@BOTH_STORES
def test_a_retry_while_the_first_request_still_runs_is_told_to_wait(
    api: ApiClient, team, stalled_read_models: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, org, viewer = team
    # The first request saves its invitation, then waits for the stalled read models until they resume.
    monkeypatch.setattr(commands, "READ_YOUR_WRITES_TIMEOUT_S", 60.0)
    body = {"email": "race@example.com", "roleId": viewer}
    first: list = []
    thread = threading.Thread(
        target=lambda: first.append(api.post("/api/members/invite", owner, org, json=body, headers=key("race")))
    )
    thread.start()
    try:
        for _ in range(1000):  # until the first request holds the key
            with api.services.read_db.snapshot() as cursor:
                cursor.execute(f"SELECT COUNT(*) FROM {idempotency_keys.TABLE}")
                if cursor.fetchone()[0]:
                    break
            threading.Event().wait(0.01)
        second = api.post("/api/members/invite", owner, org, json=body, headers=key("race"))
    finally:
        stalled_read_models()  # the worker is back: the first request confirms and answers
        thread.join()
    body_problem = problem(second, 409, "idempotency_key_in_use")
    assert second.headers["Retry-After"] == "1" and "still running" in body_problem["detail"]
    assert first[0].status_code == 201 and "Idempotent-Replayed" not in first[0].headers
    again = api.post("/api/members/invite", owner, org, json=body, headers=key("race"))
    assert again.json == first[0].json and again.headers["Idempotent-Replayed"] == "true"
    assert pending_emails(api, owner, org) == ["race@example.com"]


def test_what_is_kept_for_a_key_never_shows_an_invite_link_code(api: ApiClient, team) -> None:
    owner, org, viewer = team
    created = api.post("/api/invite-links", owner, org, json={"roleId": viewer}, headers=key("link"))
    again = api.post("/api/invite-links", owner, org, json={"roleId": viewer}, headers=key("link"))
    assert created.status_code == 201 and again.json["code"] == created.json["code"]
    with api.services.read_db.snapshot() as cursor:
        cursor.execute(f"SELECT payload FROM {idempotency_keys.TABLE}")
        stored = " ".join(str(row[0]) for row in cursor.fetchall())
    assert stored and created.json["code"] not in stored and "inviteLinks" not in stored


@pytest.mark.parametrize("bad", ["x" * 256, "tab\tinside", "ünïcode"])
def test_a_malformed_key_is_refused(api: ApiClient, team, bad: str) -> None:
    owner, org, viewer = team
    response = api.post(
        "/api/members/invite", owner, org, json={"email": "k@example.com", "roleId": viewer},
        headers={"Idempotency-Key": bad.encode("utf-8").decode("latin-1")},
    )  # fmt: skip
    problem(response, 400, "invalid_idempotency_key")
