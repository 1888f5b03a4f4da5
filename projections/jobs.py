"""Read model: bulk jobs with their progress, and every item's result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from membership.jobs import BulkJob
from projections.engine.base import Projection, Writer
from projections.engine.reading import Key, Page, cursor_after, ordered_page, read
from projections.engine.sql import ReadDatabase
from projections.members import ActorRef


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


# -- reads -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobItemRecord:
    member_id: str
    status: str  # succeeded or failed
    code: str
    message: str


@dataclass(frozen=True)
class JobRecord:
    id: str
    organization_id: str
    type: str
    status: str
    total: int
    processed: int
    succeeded: int
    created_by: ActorRef
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    results: tuple[JobItemRecord, ...] = ()

    @property
    def failed(self) -> int:
        return self.processed - self.succeeded


_JOB_SELECT = (
    "SELECT job_id, organization_id, job_type, status, total, processed, succeeded, created_by_id, created_by_email,"
    " created_at, started_at, finished_at, cancel_requested FROM {jobs}"
)


def _job(db: ReadDatabase, row: Sequence[Any], results: tuple[JobItemRecord, ...] = ()) -> JobRecord:
    t = db.from_db_time
    return JobRecord(
        row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), int(row[6]), ActorRef(row[7], row[8]),
        db.when(row[9]), t(row[10]), t(row[11]), bool(row[12]), results,
    )  # fmt: skip


def get_job(db: ReadDatabase, organization_id: UUID, job_id: UUID) -> JobRecord | None:
    """A job with every item's result, in request order."""
    with read(db) as tables:
        rows = tables.fetch(
            f"{_JOB_SELECT} WHERE organization_id = %s AND job_id = %s", str(organization_id), str(job_id)
        )
        if not rows:
            return None
        items = tables.fetch(
            "SELECT member_id, status, code, message FROM {job_results} WHERE job_id = %s ORDER BY item", str(job_id)
        )
    return _job(db, rows[0], tuple(JobItemRecord(*item) for item in items))


_JOB_KEYS = (Key("created_at", descending=True, kind=datetime), Key("job_id"))


def list_jobs(db: ReadDatabase, organization_id: UUID, limit: int = 50, cursor: str | None = None) -> Page[JobRecord]:
    """The organization's jobs, newest first, without item results."""
    total, rows, more = ordered_page(
        db, "{jobs}", _JOB_SELECT, "organization_id = %s", [str(organization_id)], _JOB_KEYS, cursor, limit
    )
    jobs = [_job(db, row) for row in rows]
    return Page(jobs, total, cursor_after(jobs[-1].created_at, jobs[-1].id) if more else None)
