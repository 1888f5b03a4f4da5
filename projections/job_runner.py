"""Runs queued bulk jobs, batch by batch, in the worker (or the server on SQLite).

Progress lives on the job aggregate, saved with each batch's effects: a runner
killed mid-job resumes where the last saved batch ended. Several runners may
work at once; optimistic concurrency keeps each batch applied once.
"""

from __future__ import annotations

import logging
import threading
from uuid import UUID

from membership import Organizations
from projections.queries import read
from projections.sql import ReadDatabase

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(
        self, organizations: Organizations, db: ReadDatabase, batch_size: int = 500, poll_interval_s: float = 0.25
    ) -> None:
        self.organizations, self.db = organizations, db
        self.batch_size, self.poll_interval_s = batch_size, poll_interval_s
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        organizations.save_listeners.append(lambda position: self._wake.set())

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

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("jobs: a batch failed; retrying shortly")
                busy = 0
            if not busy:
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()
