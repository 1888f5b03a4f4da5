"""Filling a rebuild's new generation with several processes at once (PostgreSQL).

A rebuild is bound by Python: reading, decoding and applying events on one
core. Every table row belongs to one aggregate's events (an organization's
members, invitations, roles and audit rows; a bulk job's rows), so the
aggregates can be dealt out in *shares* (by the last byte of their id): one
process per share reads only its share's events and applies them to every
projection being rebuilt, in the same tables, with the share's own position
written in the same transaction (`projections.engine.tracking` shares table).
A killed share resumes from its own position.

The processes all stop at the same position (the last event when the fill
began); the generation's position then becomes that position in one
transaction that drops the shares, and the single-process rebuild continues
from there (catch up, switch).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from membership import Organizations
from membership.database import Database
from projections.engine import parking, tracking
from projections.engine.base import apply_batch
from projections.engine.catalog import PROJECTIONS
from projections.engine.decoding import ProjectionDecoder
from projections.engine.eventlog import Share, read_share
from projections.engine.retrying import Target, apply_or_park, is_item_failure, skipped_positions, without
from projections.engine.sql import ReadDatabase

POLL_S = 0.5


class ShareFailedError(Exception):
    """A process filling one share stopped with an error (its traceback is on stderr)."""


CODEC = ("CIPHER_TOPIC", "CIPHER_KEY", "COMPRESSOR_TOPIC")  # how the stored events are encrypted and compressed


def fill(
    database: Database,
    codec: dict[str, str],
    db: ReadDatabase,
    generations: dict[str, int],
    parts: int,
    target: int,
    batch_size: int,
    on_progress: Callable[[int], None],
) -> None:
    """Run one process per share until every share of every generation reaches `target`.

    `codec` is the event store's encryption and compression (the CODEC settings of the parent's application).
    `generations` maps projection name -> building generation, whose share rows must
    exist. `on_progress` is called with how far the slowest share moved.
    """
    reported = _slowest(db, generations)
    workers = []
    try:
        for part in range(parts):
            job = Job(database, codec, generations, Share(part, parts), target, batch_size, os.getpid())
            # A fresh interpreter (not fork: this process holds connection pools and threads), given its job on stdin.
            worker = subprocess.Popen([sys.executable, "-m", "projections.engine.parallel"], stdin=subprocess.PIPE)
            workers.append(worker)
            assert worker.stdin is not None
            worker.stdin.write(pickle.dumps(job))
            worker.stdin.close()
        while any(worker.poll() is None for worker in workers):
            _check(workers)
            time.sleep(POLL_S)
            reported = _report(db, generations, reported, on_progress)
        _check(workers)
        _report(db, generations, reported, on_progress)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
            worker.wait()


@dataclass(frozen=True)
class Job:
    """What one worker process is asked to do."""

    database: Database
    codec: dict[str, str]  # the key travels to the child on its stdin, never in its arguments or environment
    generations: dict[str, int]
    share: Share
    target: int
    batch_size: int
    parent_pid: int


def _check(workers: list[subprocess.Popen[bytes]]) -> None:
    failed = [(part, worker.returncode) for part, worker in enumerate(workers) if worker.returncode not in (None, 0)]
    if failed:
        names = ", ".join(f"share {part} (exit code {code})" for part, code in failed)
        raise ShareFailedError(f"rebuild stopped: {names} failed; run the rebuild again to resume")


def _slowest(db: ReadDatabase, generations: dict[str, int]) -> int:
    with db.snapshot() as cursor:
        return min(
            min(tracking.share_positions(db, cursor, name, generation).values())
            for name, generation in generations.items()
        )


def _report(db: ReadDatabase, generations: dict[str, int], reported: int, on_progress: Callable[[int], None]) -> int:
    slowest = _slowest(db, generations)
    if slowest > reported:
        on_progress(slowest - reported)
    return max(slowest, reported)


# -- in each worker process ------------------------------------------------------
def main() -> None:
    """Entry point of a worker process: `python -m projections.engine.parallel`, with a pickled Job on stdin."""
    job: Job = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 -- written by our own parent process
    try:
        # The tables exist; concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL.
        organizations = Organizations(env={**job.database.eventsourcing_env(), **job.codec, "CREATE_TABLE": "no"})
        db = ReadDatabase(job.database, pool_size=1)
        try:
            filler = ShareFiller(organizations, db, job.generations, job.share, job.target, job.batch_size)
            filler.run(job.parent_pid)
        finally:
            db.close()
            organizations.close()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent says it was interrupted
        sys.exit(130)


class ShareFiller:
    """One share of a parallel fill: its events, applied to every generation being built."""

    def __init__(
        self,
        organizations: Organizations,
        db: ReadDatabase,
        generations: dict[str, int],
        share: Share,
        target: int,
        batch_size: int,
    ) -> None:
        self.organizations, self.db, self.share = organizations, db, share
        self.decoder = ProjectionDecoder(organizations.mapper)
        self.target, self.batch_size = target, batch_size
        self.projections = {name: PROJECTIONS[name](generation) for name, generation in sorted(generations.items())}
        self.skipped = skipped_positions(organizations, list(self.projections))  # operators' skips hold in rebuilds

    def run(self, parent_pid: int | None = None) -> None:
        """Until every projection's share reaches the target; stops if the parent process is gone."""
        while (position := self._lowest_position()) < self.target:
            if parent_pid is not None and os.getppid() != parent_pid:
                raise SystemExit("the rebuild that started this share is gone")
            # About batch_size events of this share: every share has a similar part of each range.
            reached = min(position + self.batch_size * self.share.parts, self.target)
            notifications = read_share(self.organizations, position, reached, self.share)
            batch = self.decoder.batch(notifications)
            try:
                with self.db.transaction(wait_for_disk=False) as cursor:
                    for name, projection in self.projections.items():
                        after = tracking.lock_share(self.db, cursor, name, projection.generation, self.share.part)
                        if after < reached:
                            held = parking.held(self.db, cursor, name, projection.generation)
                            apply_batch(self.db, cursor, projection, without(batch, self.skipped[name]), after, held)
                            tracking.set_share_position(
                                self.db, cursor, name, projection.generation, self.share.part, reached
                            )
            except Exception as error:
                if not is_item_failure(error):
                    raise
                for name, projection in self.projections.items():
                    projection.forget_uncommitted()
                    wanted = without(batch, self.skipped[name])
                    apply_or_park(self.db, self.organizations, projection, self._target(name), wanted, reached)

    def _target(self, name: str) -> Target:
        """This share's position in the projection's generation (where apply_or_park records progress)."""
        generation, part = self.projections[name].generation, self.share.part
        return Target(
            name,
            generation,
            lambda cursor: tracking.lock_share(self.db, cursor, name, generation, part),
            lambda cursor, position: tracking.set_share_position(self.db, cursor, name, generation, part, position),
        )

    def _lowest_position(self) -> int:
        with self.db.snapshot() as cursor:
            return min(
                tracking.share_positions(self.db, cursor, name, projection.generation)[
                    (self.share.part, self.share.parts)
                ]
                for name, projection in self.projections.items()
            )


if __name__ == "__main__":
    main()
