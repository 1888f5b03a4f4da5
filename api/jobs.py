"""Bulk member operations as background jobs: `/api/members/bulk/*` and `/api/jobs`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import request

from api.auth import Membership, requires
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services
from api.errors import ApiError
from api.paging import checked_cursor
from api.problems import answers
from api.schemas import BulkRemoveSchema, BulkRoleSchema, JobEnvelopeSchema, JobListSchema, JobSchema, PageQuerySchema
from membership import exceptions as err
from membership.jobs import REMOVAL, ROLE_CHANGE, JobFinishedError, JobNotFoundError
from membership.permissions import MANAGE_MEMBERS
from projections import jobs as jobs_reads
from projections.jobs import JobRecord

blp = Blueprint("jobs", __name__, url_prefix="/api", description="Bulk operations and their jobs")
MAX_IDEMPOTENCY_KEY = 255


@blp.route("/members/bulk/role", methods=["POST"])
@answers(err.RoleNotFoundError, err.OwnerRoleNotAssignableError, err.PrivilegeEscalationError)
@blp.arguments(BulkRoleSchema)
@blp.response(202, JobEnvelopeSchema)
@requires(MANAGE_MEMBERS)
def bulk_role(me: Membership, body: dict[str, Any]) -> Any:
    """Change the role of up to 10,000 members, as a background job (manage:members)."""
    return _start(me, ROLE_CHANGE, body["memberIds"], body["roleId"])


@blp.route("/members/bulk/remove", methods=["POST"])
@blp.arguments(BulkRemoveSchema)
@blp.response(202, JobEnvelopeSchema)
@requires(MANAGE_MEMBERS)
def bulk_remove(me: Membership, body: dict[str, Any]) -> Any:
    """Remove up to 10,000 members, as a background job (manage:members)."""
    return _start(me, REMOVAL, body["memberIds"], None)


@blp.route("/jobs", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, JobListSchema)
@requires(MANAGE_MEMBERS)
def list_jobs(me: Membership, args: dict[str, Any]) -> Any:
    """The organization's jobs, newest first (manage:members)."""
    with checked_cursor():
        return jobs_reads.list_jobs(services().read_db, me.organization_id, args["limit"], args.get("cursor"))


@blp.route("/jobs/<uuid:job_id>", methods=["GET"])
@answers(JobNotFoundError)
@blp.response(200, JobSchema)
@requires(MANAGE_MEMBERS)
def get_job(me: Membership, job_id: UUID) -> Any:
    """Progress and per-member results (manage:members)."""
    return _job(me.organization_id, job_id)


@blp.route("/jobs/<uuid:job_id>/cancel", methods=["POST"])
@answers(JobNotFoundError, JobFinishedError, err.ConflictError)
@blp.response(200, JobSchema)
@requires(MANAGE_MEMBERS)
def cancel_job(me: Membership, job_id: UUID) -> Any:
    """Stop a job after the batch in progress (manage:members); 409 once it has finished."""
    execute(lambda: services().organizations.cancel_job(me.organization_id, me.actor, job_id))
    return _job(me.organization_id, job_id)


def _start(me: Membership, job_type: str, member_ids: list[UUID], role_id: UUID | None) -> Any:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400, "invalid_idempotency_key", f"An Idempotency-Key has at most {MAX_IDEMPOTENCY_KEY} characters."
        )
    receipt = execute(
        lambda: services().organizations.request_bulk_job(
            me.organization_id, me.actor, job_type, member_ids, role_id, key
        )[0]
    )
    assert receipt.id is not None
    return {"job": _job(me.organization_id, receipt.id)}, 202, {"Location": f"/api/jobs/{receipt.id}"}


def _job(organization_id: UUID, job_id: UUID) -> JobRecord:
    job = jobs_reads.get_job(services().read_db, organization_id, job_id)
    if job is None:
        raise JobNotFoundError(f"No job {job_id} in this organization.")
    return job
