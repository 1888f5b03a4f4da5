"""Keeps the active generation of every projection up to date with the event log.

Why not the library's ProjectionRunner: it commits once per event (~630
events/s), waits 100-800 ms between polls, has no SQLite subscription and
no blue/green rebuild. This runner reads a batch of notifications once,
decodes it once, and applies it to every projection in one transaction
together with their positions (exactly-once: the positions and the rows
commit or roll back together). Several runners may run at once: each batch
locks the projections' rows first, and skips events already applied.

Nothing one organization's events do can stop the others: when a batch fails,
each projection is applied alone, and one that still fails goes event by
event; an event that keeps failing parks its organization in that projection
(projections.engine.parking, projections.engine.retrying) and everybody else goes on. An
outage (projections.engine.outages) is waited out by the loop; a projection whose own
tables are broken records its error (shown by status and health) and is
retried with growing pauses while the others go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from membership import Organizations
from projections.engine import parking, tracking
from projections.engine.background import BackgroundLoop
from projections.engine.base import Projection, apply_batch
from projections.engine.catalog import PROJECTIONS
from projections.engine.decoding import ProjectionDecoder
from projections.engine.eventlog import read_batch
from projections.engine.outages import is_systemic, is_transient
from projections.engine.retrying import apply_or_park, describe, generation_target
from projections.engine.sql import Cursor, ReadDatabase

log = logging.getLogger(__name__)
Batch = list[tuple[int, Any]]
LISTEN_TIMEOUT_S = 0.1  # also how long stop() may wait for the listener
FIRST_BROKEN_PAUSE_S, MAX_BROKEN_PAUSE_S = 1.0, 60.0


class ProjectionRunner(BackgroundLoop):
    """Applies new events to the active generations of the named projections."""

    name = "projection-runner"

    def __init__(
        self,
        organizations: Organizations,
        db: ReadDatabase,
        names: Iterable[str] | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.02,
    ) -> None:
        super().__init__(organizations)
        self.organizations = organizations
        self.decoder = ProjectionDecoder(organizations.mapper)
        self.db = db
        self.names = sorted(names or PROJECTIONS)  # a fixed lock order: no deadlocks between runners
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval
        self.broken: dict[str, Broken] = {}  # projections whose own tables fail, until their next try
        self._instances: dict[tuple[str, int], Projection] = {}
        self._listener: Any = None
        # Where the next batch starts when the last one left every one of these read models at it
        # (a read of the positions saved per batch); None: look it up.
        self._resume: tuple[list[str], int] | None = None

    # -- one step ----------------------------------------------------------
    def run_once(self) -> int:
        """Apply the next batch of events; returns how many were read (0 when caught up)."""
        names = [name for name in self.names if self._due(name)]
        if not names:
            return 0
        resume, self._resume = self._resume, None
        start = resume[1] if resume is not None and resume[0] == names else self._lowest_position(names)
        notifications = read_batch(self.organizations, start, self.batch_size)
        if not notifications:
            self._resume = (names, start)
            return 0
        batch = self.decoder.batch(notifications)
        last = notifications[-1].id
        try:
            with self.db.transaction() as cursor:
                complete = self._apply(cursor, names, batch, start, last)
            for name in names:
                self.broken.pop(name, None)
            if complete:
                self._resume = (names, last)
        except Exception as error:
            self._forget_uncommitted()
            if is_transient(error):
                raise
            for name in names:
                self._apply_alone(name, batch, start, last)
        finally:
            self.db.progress.committed()
        return len(notifications)

    def catch_up(self) -> int:
        """Apply everything there is now; returns the number of events read."""
        total = 0
        while count := self.run_once():
            total += count
        return total

    # -- running in the background -----------------------------------------
    def run_forever(self) -> None:
        """Until stop(): apply batches, then sleep until woken by a save, a NOTIFY or the poll interval."""
        try:
            with self.db.progress.running():
                super().run_forever()
        finally:
            self.recover(None)

    def idle(self) -> None:
        if self.db.is_sqlite:
            super().idle()
            return
        if self._listener is None:  # (re)connected here, so a lost connection heals like any outage
            self._listener = self.db.listen_connection(self._channel())
        for _ in self._listener.notifies(timeout=LISTEN_TIMEOUT_S, stop_after=1):
            pass
        self._wake.clear()

    def recover(self, error: Exception | None) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(Exception):
                listener.close()

    def _channel(self) -> str:
        return f"{self.organizations.name.lower()}_events"

    # -- applying ----------------------------------------------------------
    def _apply(self, cursor: Cursor, names: Sequence[str], batch: Batch, start: int, last: int) -> bool:
        """The batch (the events after `start` up to `last`) into the active generations of `names` and their
        positions, set-wise: the bookkeeping is three statements whatever the number of read models.

        Returns whether every one of them is now at `last` or beyond. One is not when it has no active row
        (a rebuild is switching it right now) or is behind `start` (a rebuild just made a generation active
        that has not seen the batch's first events): it is left for the next batch, read from its position.
        """
        active = tracking.lock_active(self.db, cursor, names)
        fits = [g for g in active.values() if start <= g.position < last]  # at `last` or beyond: another runner's
        if fits:
            held = parking.held_by(self.db, cursor, [(g.name, g.generation) for g in fits])
            for g in fits:
                apply_batch(
                    self.db, cursor, self._projection(g.name, g.generation), batch, g.position,
                    held.get((g.name, g.generation), frozenset()),
                )  # fmt: skip
            tracking.set_positions(self.db, cursor, fits, last)
            self.db.notify_applied(cursor)
        return len(active) == len(names) and all(g.position >= start for g in active.values())

    def _apply_alone(self, name: str, batch: Batch, start: int, last: int) -> None:
        """After a failed batch: this projection alone, then event by event if it still fails."""
        try:
            with self.db.transaction() as cursor:
                self._apply(cursor, [name], batch, start, last)
            self.broken.pop(name, None)
            return
        except Exception as error:
            self._forget_uncommitted()
            if is_transient(error):
                raise
            if is_systemic(error):
                self._mark_broken(name, error)
                return
        generation = self._active_generation(name)
        if generation is None:
            return
        target = generation_target(self.db, name, generation, tracking.ACTIVE)
        try:
            apply_or_park(self.db, self.organizations, self._projection(name, generation), target, batch, last)
            self.broken.pop(name, None)
        except Exception as error:
            if is_transient(error):
                raise
            self._mark_broken(name, error)

    def _mark_broken(self, name: str, error: Exception) -> None:
        """The projection's own tables fail: say so where operators look, and try again later."""
        previous = self.broken.get(name)
        pause = min(previous.pause_s * 2, MAX_BROKEN_PAUSE_S) if previous else FIRST_BROKEN_PAUSE_S
        self.broken[name] = Broken(time.monotonic() + pause, pause, describe(error))
        log.error("projection %r cannot apply events: %s; next try in %.0f s", name, describe(error), pause)
        with self.db.transaction() as cursor:
            active = tracking.lock_generation(self.db, cursor, name, tracking.ACTIVE)
            if active is not None:
                tracking.record_error(self.db, cursor, name, active.generation, active.position + 1, describe(error))

    def _due(self, name: str) -> bool:
        broken = self.broken.get(name)
        return broken is None or time.monotonic() >= broken.retry_at

    def _lowest_position(self, names: Sequence[str]) -> int:
        with self.db.snapshot() as cursor:
            generations = tracking.all_generations(self.db, cursor)
        positions = [g.position for g in generations if g.state == tracking.ACTIVE and g.name in names]
        return min(positions, default=0)

    def _active_generation(self, name: str) -> int | None:
        with self.db.snapshot() as cursor:
            return tracking.active_generations(self.db, cursor).get(name)

    def _projection(self, name: str, generation: int) -> Projection:
        key = (name, generation)
        if key not in self._instances:
            # A new generation is active: the old one's object goes, with what it remembered (an erasure's
            # rebuild replaced tables that held a person's data: the memory of them must go too).
            for old in [k for k in self._instances if k[0] == name]:
                del self._instances[old]
            self._instances[key] = PROJECTIONS[name](generation)
        return self._instances[key]

    def _forget_uncommitted(self) -> None:
        for projection in self._instances.values():
            projection.forget_uncommitted()


@dataclass(frozen=True)
class Broken:
    retry_at: float  # time.monotonic()
    pause_s: float
    error: str
