"""Over HTTP: an organization whose events a read model holds back answers 503; the others do not notice."""

from __future__ import annotations

from projections import parking, retrying
from tests.e2e.conftest import ApiClient, problem
from tests.helpers import fix_the_bug, refuse_member_rows


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
