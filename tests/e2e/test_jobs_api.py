"""Bulk operations over HTTP: 202 with a job, progress, results, idempotency, cancel, permissions."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.e2e.conftest import ApiClient, User, problem


def crowd(api: ApiClient, owner: User, org: str, size: int) -> list[str]:
    """`size` viewers who joined through a link; their member ids."""
    link = api.post("/api/invite-links", owner, org, json={"roleId": api.role_id(org, "Viewer", owner), "maxUses": 0})
    for _ in range(size):
        assert (
            api.post("/api/auth/accept-invite-link", api.user("p"), json={"code": link.json["code"]}).status_code == 200
        )
    members = api.get("/api/members?limit=200&role=Viewer", owner, org).json["members"]
    return [m["id"] for m in members]


def finished_job(api: ApiClient, location: str, user: User, org: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        job = api.get(location, user, org).json
        if job["status"] not in ("queued", "running"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def test_a_bulk_role_change_is_a_job_with_per_member_results(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    ids = crowd(api, owner, org, 4)
    unknown = str(uuid.uuid4())
    started = api.post(
        "/api/members/bulk/role",
        owner,
        org,
        json={"memberIds": [*ids, unknown], "roleId": api.role_id(org, "Developer", owner)},
    )
    assert started.status_code == 202
    job = started.json["job"]
    assert started.headers["Location"] == f"/api/jobs/{job['id']}"
    assert (job["type"], job["total"], job["createdBy"]["userId"]) == ("bulk_role_change", 5, owner.user_id)

    done = finished_job(api, started.headers["Location"], owner, org)

    assert (done["status"], done["processed"], done["succeeded"], done["failed"]) == ("partially_succeeded", 5, 4, 1)
    assert done["results"][-1] == {"memberId": unknown, "status": "failed", "code": "member_not_found",
                                   "message": done["results"][-1]["message"]}  # fmt: skip
    assert done["startedAt"] and done["finishedAt"]
    assert api.get("/api/members?role=Developer", owner, org).json["total"] == 4


def test_a_bulk_removal_skips_the_owner_and_the_caller(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    admin = api.join(org, owner, "Admin", "admin")
    ids = crowd(api, owner, org, 3)
    everyone = [m["id"] for m in api.get("/api/members", owner, org).json["members"]]
    started = api.post("/api/members/bulk/remove", admin, org, json={"memberIds": everyone})
    done = finished_job(api, started.headers["Location"], admin, org)
    codes = sorted(r["code"] for r in done["results"] if r["status"] == "failed")
    assert codes == ["cannot_modify_yourself", "owner_cannot_be_removed"]
    assert done["succeeded"] == len(ids)
    assert api.get("/api/members", owner, org).json["total"] == 2


def test_a_retried_request_with_the_same_idempotency_key_returns_the_same_job(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    ids = crowd(api, owner, org, 2)
    headers = {"Idempotency-Key": "retry-me"}
    first = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": ids}, headers=headers)
    again = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": ids}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json["job"]["id"] == again.json["job"]["id"]
    assert len(api.get("/api/jobs", owner, org).json["jobs"]) == 1
    other = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": ids[:1]}, headers=headers)
    problem(other, 409, "idempotency_key_reused")


def test_ten_thousand_ids_fit_in_a_request_and_one_more_does_not(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    ids = [str(uuid.uuid4()) for _ in range(10_000)]
    accepted = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": ids})
    assert accepted.status_code == 202 and accepted.json["job"]["total"] == 10_000
    refused = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": [*ids, str(uuid.uuid4())]})
    assert problem(refused, 422, "validation_failed")["errors"]["memberIds"]


def test_bulk_requests_are_validated(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    problem(api.post("/api/members/bulk/remove", owner, org, json={"memberIds": []}), 422, "validation_failed")
    problem(
        api.post("/api/members/bulk/remove", owner, org, json={"memberIds": ["not-a-uuid"]}), 422, "validation_failed"
    )
    problem(
        api.post("/api/members/bulk/role", owner, org, json={"memberIds": [str(uuid.uuid4())]}),
        422,
        "validation_failed",
    )
    unknown_role = {"memberIds": [str(uuid.uuid4())], "roleId": str(uuid.uuid4())}
    problem(api.post("/api/members/bulk/role", owner, org, json=unknown_role), 404, "role_not_found")
    owner_role = {"memberIds": [str(uuid.uuid4())], "roleId": api.role_id(org, "Owner", owner)}
    problem(api.post("/api/members/bulk/role", owner, org, json=owner_role), 403, "owner_role_not_assignable")


def test_jobs_need_manage_members(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer = api.join(org, owner, "Viewer", "viewer")
    job = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": [str(uuid.uuid4())]}).json["job"]
    for response in (
        api.post("/api/members/bulk/remove", viewer, org, json={"memberIds": [str(uuid.uuid4())]}),
        api.get(f"/api/jobs/{job['id']}", viewer, org),
        api.get("/api/jobs", viewer, org),
        api.post(f"/api/jobs/{job['id']}/cancel", viewer, org),
    ):
        assert problem(response, 403, "missing_permission")["permission"] == "manage:members"


def test_a_job_of_another_organization_is_not_found(api: ApiClient) -> None:
    owner, stranger = api.user("owner"), api.user("stranger")
    org, other = api.new_org(owner), api.new_org(stranger)
    job = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": [str(uuid.uuid4())]}).json["job"]
    problem(api.get(f"/api/jobs/{job['id']}", stranger, other), 404, "job_not_found")
    problem(api.post(f"/api/jobs/{job['id']}/cancel", stranger, other), 404, "job_not_found")


def test_cancelling_a_finished_job_is_a_conflict(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    started = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": [str(uuid.uuid4())]})
    finished_job(api, started.headers["Location"], owner, org)
    problem(api.post(f"{started.headers['Location']}/cancel", owner, org), 409, "job_finished")


def test_a_cancelled_job_reports_cancelled(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    api.services.jobs.stop()  # type: ignore[union-attr]  # hold the job in the queue
    started = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": [str(uuid.uuid4())]})
    cancelled = api.post(f"{started.headers['Location']}/cancel", owner, org)
    assert cancelled.status_code == 200 and cancelled.json["cancelRequested"] is True
    api.services.organizations.process_job_batch(uuid.UUID(started.json["job"]["id"]))
    api.services.runner.catch_up()  # type: ignore[union-attr]
    job = api.get(started.headers["Location"], owner, org).json
    assert (job["status"], job["processed"]) == ("cancelled", 0)
