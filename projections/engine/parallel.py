"""Filling a rebuild's new generation with several processes at once (PostgreSQL).

A rebuild is bound by Python: reading, decoding and applying events on one
core. Every table row belongs to one aggregate's events (an organization's
members, invitations, roles and audit rows; a bulk job's rows), so the
aggregates can be dealt out in *shares*: one process per share reads only its
share's events and applies them to every projection being rebuilt, in the same
tables, with the share's own position and count of events applied written in
the same transaction (`projections.engine.tracking` shares table).

The aggregates are dealt by how many events each has up to the fill's last
position (`deal`), so that two large organizations do not land in one share
and leave the other processes idle. The deal is recorded with the shares when
the fill begins: a killed share resumes from its own position with exactly the
aggregates it had (aggregates created since are left to the catch-up).

The processes all stop at the same position (the last event when the fill
began); the generation's position then becomes that position in one
transaction that drops the shares, and the single-process rebuild continues
from there (catch up, switch).
"""

from __future__ import annotations

import heapq
import os
import pickle
import subprocess
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from uuid import UUID

from membership import Organizations
from membership.database import Database
from membership.personal_data import MasterKeys, PersonalKeys
from projections.engine import parking, tracking
from projections.engine.base import apply_batch
from projections.engine.catalog import PROJECTIONS
from projections.engine.decoding import ProjectionDecoder
from projections.engine.eventlog import Share, read_share
from projections.engine.retrying import Target, apply_or_park, is_item_failure, skipped_positions, without
from projections.engine.sql import Cursor, ReadDatabase

POLL_S = 0.5


class ShareFailedError(Exception):
    """A process filling one share stopped with an error (its traceback is on stderr)."""


CODEC = ("CIPHER_TOPIC", "CIPHER_KEY", "COMPRESSOR_TOPIC")  # how the stored events are encrypted and compressed


def deal(counts: Mapping[UUID, int], parts: int) -> dict[UUID, int]:
    """Aggregate id -> part: the largest aggregate first, each to the share with the fewest events so far.

    Deterministic (equal counts go by id, equal loads to the lower part), so the same counts give the same deal.
    """
    loads = [(0, part) for part in range(parts)]  # a heap of (events dealt, part)
    dealt = {}
    for aggregate, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        load, part = heapq.heappop(loads)
        dealt[aggregate] = part
        heapq.heappush(loads, (load + count, part))
    return dealt


def by_last_byte(aggregates: Iterable[UUID], parts: int) -> dict[UUID, int]:
    """The deal of fills begun before shares were balanced (the last byte of the id): they resume with it."""
    return {aggregate: aggregate.bytes[15] % parts for aggregate in aggregates}


def share_events(counts: Mapping[UUID, int], dealt: Mapping[UUID, int], parts: int) -> list[int]:
    """How many of `counts`' events each share has, by part."""
    events = [0] * parts
    for aggregate, count in counts.items():
        events[dealt[aggregate]] += count
    return events


@dataclass(frozen=True)
class FillProgress:
    """How far a parallel fill is, in events: those applied, of those it has to apply up to `target`."""

    done: int
    total: int
    target: int


def progress(db: ReadDatabase, cursor: Cursor, generations: dict[str, int]) -> FillProgress | None:
    """The fill of these generations, counted by the one with the most events to apply (None: no counted shares).

    The projections of a fill move together (one transaction per batch applies a share's events to all of
    them); only those that began the fill at different positions have different amounts to apply.
    """
    counted = []
    for name, generation in sorted(generations.items()):
        shares = tracking.shares(db, cursor, name, generation)
        if shares and all(share.events is not None and share.target is not None for share in shares):
            counted.append(shares)
    if not counted:
        return None
    shares = max(counted, key=lambda found: sum(share.events or 0 for share in found))
    total = sum(share.events or 0 for share in shares)
    done = sum(min(share.applied, share.events or 0) for share in shares)
    return FillProgress(done, total, max(share.target or 0 for share in shares))


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

    `codec` is the event store's encryption and compression (the CODEC settings of the parent's application),
    and the master keys of sealed personal data (`MasterKeys.as_codec`).
    `generations` maps projection name -> building generation, whose share rows and deal must exist (the
    processes read the deal recorded for the first of them). `on_progress` is called with how many more
    events the fill has applied (see `progress`).
    """
    reported = _done(db, generations)
    plan = min(generations.items())
    workers = []
    try:
        for part in range(parts):
            share = Share(part, parts, *plan)
            job = Job(database, codec, generations, share, target, batch_size, os.getpid())
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


def _done(db: ReadDatabase, generations: dict[str, int]) -> int:
    with db.snapshot() as cursor:
        found = progress(db, cursor, generations)
    return found.done if found is not None else 0


def _report(db: ReadDatabase, generations: dict[str, int], reported: int, on_progress: Callable[[int], None]) -> int:
    done = _done(db, generations)
    if done > reported:
        on_progress(done - reported)
    return max(done, reported)


# -- in each worker process ------------------------------------------------------
def main() -> None:
    """Entry point of a worker process: `python -m projections.engine.parallel`, with a pickled Job on stdin."""
    job: Job = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 -- written by our own parent process
    try:
        # The tables exist; concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL.
        env = {name: value for name, value in job.codec.items() if name in CODEC}
        masters = MasterKeys.from_codec(job.codec)
        organizations = Organizations(
            env={**job.database.eventsourcing_env(), **env, "CREATE_TABLE": "no"},
            personal_keys=None if masters is None else PersonalKeys(masters),
        )
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
            # About batch_size events of this share, if the shares' events are spread alike over the positions.
            reached = min(position + self.batch_size * self.share.parts, self.target)
            notifications = read_share(self.organizations, position, reached, self.share)
            read = [notification.id for notification in notifications]
            batch = self.decoder.batch(notifications)
            try:
                with self.db.transaction(wait_for_disk=False) as cursor:
                    for name, projection in self.projections.items():
                        after = tracking.lock_share(self.db, cursor, name, projection.generation, self.share.part)
                        if after < reached:
                            held = parking.held(self.db, cursor, name, projection.generation)
                            apply_batch(self.db, cursor, projection, without(batch, self.skipped[name]), after, held)
                            tracking.set_share_position(
                                self.db, cursor, name, projection.generation, self.share.part, reached,
                                _between(read, after, reached),
                            )  # fmt: skip
            except Exception as error:
                if not is_item_failure(error):
                    raise
                for name, projection in self.projections.items():
                    projection.forget_uncommitted()
                    wanted = without(batch, self.skipped[name])
                    apply_or_park(self.db, self.organizations, projection, self._target(name, read), wanted, reached)

    def _target(self, name: str, read: list[int]) -> Target:
        """This share's position in the projection's generation (where apply_or_park records progress).

        `read` are the positions of the share's events in the batch at hand: what each advance counts as applied.
        """
        generation, part = self.projections[name].generation, self.share.part

        def advance(cursor: Cursor, position: int) -> None:
            after = tracking.lock_share(self.db, cursor, name, generation, part)  # locked already: no new wait
            tracking.set_share_position(
                self.db, cursor, name, generation, part, position, _between(read, after, position)
            )

        return Target(
            name, generation, lambda cursor: tracking.lock_share(self.db, cursor, name, generation, part), advance
        )

    def _lowest_position(self) -> int:
        with self.db.snapshot() as cursor:
            return min(
                tracking.share_positions(self.db, cursor, name, projection.generation)[
                    (self.share.part, self.share.parts)
                ]
                for name, projection in self.projections.items()
            )


def _between(positions: list[int], after: int, upto: int) -> int:
    """How many of the (sorted) positions are in (after, upto]."""
    return bisect_right(positions, upto) - bisect_right(positions, after)


if __name__ == "__main__":
    main()
