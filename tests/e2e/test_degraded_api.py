"""Over HTTP: an organization whose events a read model holds back answers 503; the others do not notice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from membership import Actor
from projections.engine import parking, retrying
from tests.e2e.conftest import BOTH_STORES, ApiClient, problem
from tests.helpers import fix_the_bug, refuse_member_rows

pytestmark = BOTH_STORES  # the store can change the outcome (see tests/e2e/conftest.py)


def test_a_parked_organization_answers_503_while_other_tenants_and_health_carry_on(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    poisoned, healthy = api.new_org(alice, "Poisoned"), api.new_org(bob, "Healthy")
    victim = api.user("victim")
    refuse_member_rows(api.services.read_db, victim.email)
    invited = api.post(
        "/api/members/invite",
        alice,
        poisoned,
        json={"email": victim.email, "roleId": api.role_id(poisoned, "Viewer", alice)},
    )
    token = api.invitation_token(poisoned, invited.json["id"])

    accepted = api.post("/api/auth/accept-invite", victim, json={"token": token})

    saved = problem(accepted, 503, "organization_degraded")
    assert saved["saved"]["organizationId"] == poisoned and "was saved" in saved["detail"]
    refused = problem(api.get("/api/members", alice, poisoned), 503, "organization_degraded")
    assert "InviteAccepted" in refused["detail"] and accepted.headers["Retry-After"]
    assert api.get("/api/members", bob, healthy).status_code == 200
    assert api.join(healthy, bob).user_id  # commands in other organizations go on
    health = api.get("/api/health")
    assert health.status_code == 200 and health.json["status"] == "degraded"
    (parked,) = health.json["parked"]
    assert (parked["projection"], parked["organizationId"], parked["eventType"]) == (
        "members",
        poisoned,
        "InviteAccepted",
    )
    assert health.json["projections"]["members"]["parked"] == 1

    fix_the_bug(api.services.read_db)
    (held,) = parking.active(api.services.read_db)
    assert retrying.retry(api.services.read_db, api.services.organizations, held).still_failing is None

    members = api.get("/api/members", alice, poisoned)
    assert members.status_code == 200 and victim.email in {m["email"] for m in members.json["members"]}
    assert api.get("/api/health").json["status"] == "ok"


def test_health_is_503_when_events_wait_and_no_read_model_moves(api: ApiClient) -> None:
    """The reported blind spot: the runner was gone, health said "ok" with a lag that never moved."""
    owner = api.user("owner")
    org = api.new_org(owner)
    assert api.services.runner is not None
    api.services.runner.stop()  # the worker is gone
    api.services.organizations.create_role(
        UUID(org), Actor(owner.user_id, owner.email), "Waiting", "", ["view:projects"]
    )  # an event no read model will apply
    assert api.get("/api/health").status_code == 200  # waiting a moment is not stalling
    with api.services.read_db.transaction() as cursor:  # ... but half a minute is
        cursor.execute(
            api.services.read_db.sql("UPDATE projection_generations SET updated_at = %s"),
            (api.services.read_db.to_db_time(datetime.now(UTC) - timedelta(seconds=31)),),
        )

    stalled = problem(api.get("/api/health"), 503, "read_model_stalled")

    assert "events wait" in stalled["detail"] and stalled["projections"]["roles"]["lag"] == 1
    assert all(p["stalled"] for p in stalled["projections"].values())
