"""Bulk member operations as event-sourced jobs.

A job records what was asked (role change or removal for up to 10,000
members), then its progress batch by batch. Each batch of items is applied to
the organization and recorded on the job in the same transaction, so a worker
killed mid-job resumes exactly where the last batch ended: no item is applied
twice and progress never goes backwards.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from membership import exceptions as err
from membership.events import ACTOR, Personal

MAX_ITEMS = 10_000
ROLE_CHANGE, REMOVAL = "bulk_role_change", "bulk_remove"
QUEUED, RUNNING, SUCCEEDED, PARTIAL, FAILED, CANCELLED = (
    "queued", "running", "succeeded", "partially_succeeded", "failed", "cancelled",
)  # fmt: skip
FINISHED = (SUCCEEDED, PARTIAL, FAILED, CANCELLED)


class JobNotFoundError(err.NotFoundError):
    code = "job_not_found"


class JobFinishedError(err.ConflictError):
    code = "job_finished"


class IdempotencyKeyReusedError(err.ConflictError):
    code = "idempotency_key_reused"


def job_id_for(organization_id: UUID, actor_id: str, idempotency_key: str) -> UUID:
    """The same key from the same actor in the same organization names the same job."""
    return uuid5(NAMESPACE_URL, f"/organizations/{organization_id}/jobs/{actor_id}/{idempotency_key}")


def fingerprint(job_type: str, member_ids: list[str], role_id: str | None) -> str:
    """What a request asked for, to tell a retry from a different request with the same key."""
    text = f"{job_type}|{role_id or ''}|{','.join(member_ids)}"
    return hashlib.sha256(text.encode()).hexdigest()


class BulkJob(Aggregate):
    """A bulk operation on one organization's members, applied in batches."""

    TOPIC = "membership:BulkJob"

    class Event(Aggregate.Event):
        PERSONAL_DATA: ClassVar[Personal] = ACTOR  # sealed per person (membership.personal_data)
        actor_id: str
        actor_email: str

    class Requested(Event, Aggregate.Created):
        TOPIC = "membership:BulkJob.Requested"
        organization_id: UUID
        job_type: str
        member_ids: list[str]
        role_id: str | None
        fingerprint: str

    Created = Requested  # the library looks for a "Created" event class

    class BatchProcessed(Event):
        """Results of the next items, in request order: [memberId, status, code, message]."""

        TOPIC = "membership:BulkJob.BatchProcessed"
        first_index: int  # position of the batch's first item in member_ids
        results: list[list[str]]

        def apply(self, job: BulkJob) -> None:
            job.status = RUNNING
            job.started_at = job.started_at or self.timestamp
            job.processed += len(self.results)
            job.succeeded += sum(1 for result in self.results if result[1] == "succeeded")

    class CancelRequested(Event):
        TOPIC = "membership:BulkJob.CancelRequested"

        def apply(self, job: BulkJob) -> None:
            job.cancel_requested = True

    class Finished(Event):
        TOPIC = "membership:BulkJob.Finished"
        status: str

        def apply(self, job: BulkJob) -> None:
            job.status = self.status
            job.finished_at = self.timestamp

    def __init__(
        self,
        organization_id: UUID,
        job_type: str,
        member_ids: list[str],
        role_id: str | None,
        fingerprint: str,
        actor_id: str,
        actor_email: str,
    ) -> None:
        self.organization_id = organization_id
        self.actor_id, self.actor_email = actor_id, actor_email
        self.job_type = job_type
        self.member_ids = member_ids
        self.role_id = role_id
        self.fingerprint = fingerprint
        self.status = QUEUED
        self.processed = 0
        self.succeeded = 0
        self.cancel_requested = False
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None

    @classmethod
    def request(
        cls,
        job_id: UUID,
        organization_id: UUID,
        actor: Any,
        job_type: str,
        member_ids: list[UUID],
        role_id: UUID | None,
        now: datetime,
    ) -> BulkJob:
        if not 1 <= len(member_ids) <= MAX_ITEMS:
            raise err.InvalidValueError(f"memberIds must list 1 to {MAX_ITEMS} members.", "memberIds")
        ids = list(dict.fromkeys(str(member_id) for member_id in member_ids))  # each member once, in order
        role = str(role_id) if role_id else None
        return cls._create(
            cls.Requested,
            id=job_id,
            timestamp=now,
            organization_id=organization_id,
            job_type=job_type,
            member_ids=ids,
            role_id=role,
            fingerprint=fingerprint(job_type, ids, role),
            actor_id=actor.user_id,
            actor_email=actor.email.strip().lower(),
        )

    # -- progress --------------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.member_ids)

    @property
    def failed(self) -> int:
        return self.processed - self.succeeded

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def next_items(self, batch_size: int) -> list[str]:
        return self.member_ids[self.processed : self.processed + batch_size]

    def record_batch(self, results: list[list[str]], now: datetime) -> None:
        if self.is_finished:
            raise JobFinishedError("This job has already finished.")
        self.trigger_event(
            self.BatchProcessed, timestamp=now, first_index=self.processed, results=results, **self._system()
        )

    def finish(self, now: datetime) -> None:
        """Succeeded, partially succeeded, failed or cancelled, from the counts."""
        if self.is_finished:
            return
        if self.cancel_requested and self.processed < self.total:
            status = CANCELLED
        elif self.succeeded == self.total:
            status = SUCCEEDED
        elif self.succeeded == 0:
            status = FAILED
        else:
            status = PARTIAL
        self.trigger_event(self.Finished, timestamp=now, status=status, **self._system())

    def cancel(self, actor: Any, now: datetime) -> None:
        """Stop after the current batch."""
        if self.is_finished:
            raise JobFinishedError(f"This job has already finished ({self.status}).")
        if not self.cancel_requested:
            self.trigger_event(
                self.CancelRequested, timestamp=now, actor_id=actor.user_id, actor_email=actor.email.strip().lower()
            )

    @staticmethod
    def _system() -> dict[str, str]:
        return {"actor_id": "system:jobs", "actor_email": ""}
