"""Read model: bulk jobs with their progress, and every item's result."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from membership.jobs import BulkJob
from projections.base import Projection, Writer


class JobsProjection(Projection):
    name = "jobs"
    tables = {
        "jobs": (
            "job_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, job_type TEXT NOT NULL, role_id TEXT, "
            "status TEXT NOT NULL, total INTEGER NOT NULL, processed INTEGER NOT NULL, succeeded INTEGER NOT NULL, "
            "cancel_requested INTEGER NOT NULL, created_by_id TEXT NOT NULL, created_by_email TEXT NOT NULL, "
            "created_at {ts} NOT NULL, started_at {ts}, finished_at {ts}"
        ),
        "job_results": (
            "job_id TEXT NOT NULL, item INTEGER NOT NULL, member_id TEXT NOT NULL, status TEXT NOT NULL, "
            "code TEXT NOT NULL, message TEXT NOT NULL, PRIMARY KEY (job_id, item)"
        ),
    }
    indexes = [("by_org", "jobs", "organization_id, created_at"), ("by_status", "jobs", "status, created_at")]

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        pass

    @apply.register(BulkJob.Requested)
    def _requested(self, e: BulkJob.Requested, w: Writer) -> None:
        w.run(
            "INSERT INTO {jobs} (job_id, organization_id, job_type, role_id, status, total, processed, succeeded,"
            " cancel_requested, created_by_id, created_by_email, created_at)"
            " VALUES (%s, %s, %s, %s, 'queued', %s, 0, 0, 0, %s, %s, %s)",
            str(e.originator_id),
            str(e.organization_id),
            e.job_type,
            e.role_id,
            len(e.member_ids),
            e.actor_id,
            e.actor_email,
            w.time(e.timestamp),
        )

    @apply.register(BulkJob.BatchProcessed)
    def _batch(self, e: BulkJob.BatchProcessed, w: Writer) -> None:
        job = str(e.originator_id)
        succeeded = sum(1 for result in e.results if result[1] == "succeeded")
        w.run(
            "UPDATE {jobs} SET status = 'running', processed = processed + %s, succeeded = succeeded + %s,"
            " started_at = COALESCE(started_at, %s) WHERE job_id = %s",
            len(e.results),
            succeeded,
            w.time(e.timestamp),
            job,
        )
        rows = [(job, e.first_index + n, *result) for n, result in enumerate(e.results)]
        w.run_many("INSERT INTO {job_results} VALUES (%s, %s, %s, %s, %s, %s)", rows)

    @apply.register(BulkJob.CancelRequested)
    def _cancel(self, e: BulkJob.CancelRequested, w: Writer) -> None:
        w.run("UPDATE {jobs} SET cancel_requested = 1 WHERE job_id = %s", str(e.originator_id))

    @apply.register(BulkJob.Finished)
    def _finished(self, e: BulkJob.Finished, w: Writer) -> None:
        w.run(
            "UPDATE {jobs} SET status = %s, finished_at = %s WHERE job_id = %s",
            e.status,
            w.time(e.timestamp),
            str(e.originator_id),
        )
