"""Bulk role changes and removals as jobs, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from uuid import UUID, uuid4

import pytest

from membership import Actor, Organization
from membership.exceptions import MissingPermissionError, PrivilegeEscalationError
from membership.jobs import REMOVAL, ROLE_CHANGE, BulkJob, IdempotencyKeyReusedError, JobFinishedError
from projections import jobs as jobs_reads
from service.bootstrap import Services
from tests.conftest import EMBEDDED_STORE_ONLY, TEST_SECRET_KEY
from tests.factories import new_actor
from tests.helpers import join, joined_at_once, member_id, role_id
from tests.servers import MEMBERSHIP
from workers.jobs import JobRunner


class Team:
    """An organization with an owner, an admin and `size` viewers who joined by link (saved at once: a command
    each would take seconds for the bigger teams)."""

    def __init__(self, services: Services, size: int) -> None:
        app = self.app = services.organizations
        self.owner = new_actor("owner")
        self.org = app.create_organization(self.owner, "Bulk").organization_id
        self.admin = join(app, self.org, self.owner, "Admin", "admin")
        self.people = [new_actor("p") for _ in range(size)]
        self.ids, _ = joined_at_once(app, self.org, self.owner, self.people)

    def role(self, name: str) -> UUID:
        return role_id(self.app, self.org, name)

    def role_of(self, person: Actor) -> str:
        with self.app.reading(self.org) as org:
            member = org.member_for_user(person.user_id)
            assert member is not None
            return org.role_of(member).name


def run(services: Services, batch_size: int = 500) -> None:
    services.runner.catch_up()  # type: ignore[union-attr]
    JobRunner(services.organizations, services.read_db, batch_size=batch_size).run_until_idle()
    services.runner.catch_up()  # type: ignore[union-attr]


def test_a_bulk_role_change_reports_each_item_and_fails_none_for_another(services: Services) -> None:
    team = Team(services, 6)
    unknown = uuid4()
    owner_id = member_id(team.app, team.org, team.owner)
    admin_id = member_id(team.app, team.org, team.admin)
    items = [*team.ids, owner_id, admin_id, unknown]
    receipt, created = team.app.request_bulk_job(team.org, team.admin, ROLE_CHANGE, items, team.role("Developer"))
    assert created and receipt.id is not None

    run(services, batch_size=4)

    job = jobs_reads.get_job(services.read_db, team.org, receipt.id)
    assert job is not None and (job.status, job.total, job.processed, job.succeeded, job.failed) == (
        "partially_succeeded", 9, 9, 6, 3,
    )  # fmt: skip
    codes = {UUID(r.member_id): r.code for r in job.results if r.status == "failed"}
    assert codes == {
        owner_id: "owner_role_cannot_change",
        admin_id: "cannot_modify_yourself",
        unknown: "member_not_found",
    }
    assert [r.member_id for r in job.results] == [str(i) for i in items]  # request order
    assert {team.role_of(p) for p in team.people} == {"Developer"}


def test_a_bulk_removal_removes_members_and_spares_the_owner(services: Services) -> None:
    team = Team(services, 5)
    owner_id = member_id(team.app, team.org, team.owner)
    receipt, _ = team.app.request_bulk_job(team.org, team.admin, REMOVAL, [*team.ids, owner_id])
    run(services)
    job = jobs_reads.get_job(services.read_db, team.org, receipt.id)  # type: ignore[arg-type]
    assert job is not None and job.status == "partially_succeeded" and job.succeeded == 5
    with team.app.reading(team.org) as org:
        assert set(org.member_by_user) == {team.owner.user_id, team.admin.user_id}


def test_each_item_follows_the_single_operations_rules_no_escalation(services: Services) -> None:
    team = Team(services, 3)
    app = team.app
    views = [
        f"view:{r}"
        for r in ("members", "roles", "servers", "instances", "projects", "deployments", "settings", "billing")
    ]
    lead_role = app.create_role(team.org, team.owner, "Lead", "", ["manage:members", *views]).id
    lead = join(app, team.org, team.owner, "Lead", "lead")
    with pytest.raises(PrivilegeEscalationError):  # may not grant Admin
        app.request_bulk_job(team.org, lead, ROLE_CHANGE, team.ids, team.role("Admin"))
    receipt, _ = app.request_bulk_job(team.org, lead, REMOVAL, [*team.ids, member_id(app, team.org, team.admin)])
    run(services)
    job = jobs_reads.get_job(services.read_db, team.org, receipt.id)  # type: ignore[arg-type]
    assert job is not None and [r.code for r in job.results][-1] == "privilege_escalation"
    assert job.succeeded == 3 and lead_role is not None


@EMBEDDED_STORE_ONLY
def test_only_managers_may_start_a_job(services: Services) -> None:
    team = Team(services, 2)
    viewer = team.people[0]
    with pytest.raises(MissingPermissionError):
        team.app.request_bulk_job(team.org, viewer, REMOVAL, team.ids[1:])


def test_a_retried_request_with_the_same_key_returns_the_same_job(services: Services) -> None:
    team = Team(services, 3)
    first, created = team.app.request_bulk_job(team.org, team.admin, REMOVAL, team.ids, idempotency_key="k-1")
    again, created_again = team.app.request_bulk_job(team.org, team.admin, REMOVAL, team.ids, idempotency_key="k-1")
    assert created and not created_again and first.id == again.id
    other_actor, _ = team.app.request_bulk_job(team.org, team.owner, REMOVAL, team.ids, idempotency_key="k-1")
    assert other_actor.id != first.id  # keys are per actor
    with pytest.raises(IdempotencyKeyReusedError):
        team.app.request_bulk_job(team.org, team.admin, REMOVAL, team.ids[:1], idempotency_key="k-1")


def test_a_cancelled_job_stops_after_the_current_batch(services: Services) -> None:
    team = Team(services, 10)
    receipt, _ = team.app.request_bulk_job(team.org, team.admin, ROLE_CHANGE, team.ids, team.role("Developer"))
    assert receipt.id is not None
    team.app.process_job_batch(receipt.id, batch_size=4)
    team.app.cancel_job(team.org, team.admin, receipt.id)
    run(services, batch_size=4)
    job = jobs_reads.get_job(services.read_db, team.org, receipt.id)
    assert job is not None and (job.status, job.processed, job.succeeded) == ("cancelled", 4, 4)
    assert sorted(team.role_of(p) for p in team.people) == ["Developer"] * 4 + ["Viewer"] * 6
    with pytest.raises(JobFinishedError):
        team.app.cancel_job(team.org, team.admin, receipt.id)


def test_a_job_cannot_be_seen_from_another_organization(services: Services) -> None:
    team, other = Team(services, 2), Team(services, 1)
    receipt, _ = team.app.request_bulk_job(team.org, team.admin, REMOVAL, team.ids)
    assert receipt.id is not None
    run(services)
    assert jobs_reads.get_job(services.read_db, other.org, receipt.id) is None
    with pytest.raises(Exception, match="No job"):
        other.app.cancel_job(other.org, other.owner, receipt.id)


def test_a_worker_killed_mid_job_resumes_without_applying_an_item_twice(services: Services, store: str) -> None:
    size = 300  # at one item per batch, enough that no kill comes after the end
    team = Team(services, size)
    receipt, _ = team.app.request_bulk_job(team.org, team.admin, ROLE_CHANGE, team.ids, team.role("Developer"))
    job_id = receipt.id
    assert job_id is not None
    env = {
        **os.environ,
        "MEMBERSHIP_DATABASE_URL": store,
        "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
        "MEMBERSHIP_VAR_DIR": tempfile.mkdtemp(prefix="membership-var-"),
    }
    worker = subprocess.Popen(
        [MEMBERSHIP, "worker", "--job-batch-size", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: progress(services, job_id) > 0)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    killed_at = progress(services, job_id)
    assert 0 < killed_at < size  # killed mid-job

    run(services)  # another runner takes the job up from the progress the killed worker saved

    assert finished(services, job_id)
    batches = [e for e in team.app.events.get(job_id) if isinstance(e, BulkJob.BatchProcessed)]
    starts = [e.first_index for e in batches]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # progress never went backwards
    assert [result[0] for e in batches for result in e.results] == [str(i) for i in team.ids]  # each item once
    changes = Counter(
        str(e.member_id) for e in team.app.events.get(team.org) if isinstance(e, Organization.RoleChanged)
    )
    assert len(changes) == size and set(changes.values()) == {1}  # each member changed exactly once
    assert {team.role_of(p) for p in team.people} == {"Developer"}


def progress(services: Services, job_id: UUID) -> int:
    return int(services.organizations.repository.get(job_id).processed)


def finished(services: Services, job_id: UUID) -> bool:
    return bool(services.organizations.repository.get(job_id).is_finished)


def wait_until(condition: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
