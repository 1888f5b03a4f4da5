"""Runs queued bulk jobs, batch by batch, in the worker (or the server on SQLite).

Progress lives on the job aggregate, saved with each batch's effects: a runner
killed mid-job resumes where the last saved batch ended. Several runners may
work at once; optimistic concurrency keeps each batch applied once.
"""

from __future__ import annotations

from uuid import UUID

from membership import Organizations
from projections.engine.background import BackgroundLoop
from projections.engine.reading import read
from projections.engine.sql import ReadDatabase


class JobRunner(BackgroundLoop):
    name = "jobs"
    # A job is queued a few times a day, and every save (an invitation...) woke the runner to ask the read model
    # for unfinished jobs: two statements per command, for nothing. It looks every poll_interval_s instead.
    wakes_on_save = False

    def __init__(self, organizations: Organizations, db: ReadDatabase, batch_size: int = 500) -> None:
        super().__init__(organizations)
        self.organizations, self.db, self.batch_size = organizations, db, batch_size

    def run_once(self) -> int:
        """One batch of each unfinished job; returns how many jobs moved.

        The read model may still list a job that has just finished: that counts as no work.
        """
        moved = 0
        for job_id in self.unfinished():
            if self._stop.is_set():
                break
            before: int = self.organizations.repository.get(job_id).version
            moved += self.organizations.process_job_batch(job_id, self.batch_size).version != before
        return moved

    def run_until_idle(self) -> None:
        while self.run_once():
            pass

    def unfinished(self) -> list[UUID]:
        with read(self.db) as tables:
            rows = tables.fetch("SELECT job_id FROM {jobs} WHERE status IN ('queued', 'running') ORDER BY created_at")
        return [UUID(row[0]) for row in rows]
