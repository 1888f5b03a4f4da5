"""Bulk member operations as background jobs: `/api/members/bulk/*` and `/api/jobs`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import request

from api.auth import current_caller, member_manager
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services
from api.errors import ApiError
from api.paging import checked_cursor
from api.problems import MANAGER, answers
from api.schemas import BulkRemoveSchema, BulkRoleSchema, JobEnvelopeSchema, JobListSchema, JobSchema, PageQuerySchema
from membership import exceptions as err
from membership.jobs import REMOVAL, ROLE_CHANGE, JobFinishedError, JobNotFoundError
from projections import jobs as jobs_reads
from projections.jobs import JobRecord

blp = Blueprint("jobs", __name__, url_prefix="/api", description="Bulk operations and their jobs")
MAX_IDEMPOTENCY_KEY = 255


@blp.route("/members/bulk/role", methods=["POST"])
@answers(MANAGER, err.RoleNotFoundError, err.OwnerRoleNotAssignableError, err.PrivilegeEscalationError)
@blp.arguments(BulkRoleSchema)
@blp.response(202, JobEnvelopeSchema)
def bulk_role(body: dict[str, Any]) -> Any:
    """Change the role of up to 10,000 members, as a background job (manage:members)."""
    return _start(ROLE_CHANGE, body["memberIds"], body["roleId"])


@blp.route("/members/bulk/remove", methods=["POST"])
@answers(MANAGER)
@blp.arguments(BulkRemoveSchema)
@blp.response(202, JobEnvelopeSchema)
def bulk_remove(body: dict[str, Any]) -> Any:
    """Remove up to 10,000 members, as a background job (manage:members)."""
    return _start(REMOVAL, body["memberIds"], None)


@blp.route("/jobs", methods=["GET"])
@answers(MANAGER)
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, JobListSchema)
def list_jobs(args: dict[str, Any]) -> Any:
    """The organization's jobs, newest first (manage:members)."""
    organization_id, _ = member_manager()
    with checked_cursor():
        return jobs_reads.list_jobs(services().read_db, organization_id, args["limit"], args.get("cursor"))


@blp.route("/jobs/<uuid:job_id>", methods=["GET"])
@answers(MANAGER, JobNotFoundError)
@blp.response(200, JobSchema)
def get_job(job_id: UUID) -> Any:
    """Progress and per-member results (manage:members)."""
    organization_id, _ = member_manager()
    return _job(organization_id, job_id)


@blp.route("/jobs/<uuid:job_id>/cancel", methods=["POST"])
@answers(MANAGER, JobNotFoundError, JobFinishedError, err.ConflictError)
@blp.response(200, JobSchema)
def cancel_job(job_id: UUID) -> Any:
    """Stop a job after the batch in progress (manage:members); 409 once it has finished."""
    organization_id, _ = member_manager()
    execute(lambda: services().organizations.cancel_job(organization_id, current_caller().actor, job_id))
    return _job(organization_id, job_id)


def _start(job_type: str, member_ids: list[UUID], role_id: UUID | None) -> Any:
    organization_id, _ = member_manager()
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400, "invalid_idempotency_key", f"An Idempotency-Key has at most {MAX_IDEMPOTENCY_KEY} characters."
        )
    receipt = execute(
        lambda: services().organizations.request_bulk_job(
            organization_id, current_caller().actor, job_type, member_ids, role_id, key
        )[0]
    )
    assert receipt.id is not None
    return {"job": _job(organization_id, receipt.id)}, 202, {"Location": f"/api/jobs/{receipt.id}"}


def _job(organization_id: UUID, job_id: UUID) -> JobRecord:
    job = jobs_reads.get_job(services().read_db, organization_id, job_id)
    if job is None:
        raise JobNotFoundError(f"No job {job_id} in this organization.")
    return job
