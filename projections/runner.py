"""Keeps the active generation of every projection up to date with the event log.

Why not the library's ProjectionRunner: it commits once per event (~630
events/s), waits 100-800 ms between polls, has no SQLite subscription and
no blue/green rebuild. This runner reads a batch of notifications once,
decodes it once, and applies it to every projection in one transaction
together with their positions (exactly-once: the positions and the rows
commit or roll back together). Several runners may run at once: each batch
locks the projections' rows first, and skips events already applied.

A projection that fails is isolated: the batch is replayed one event per
transaction to find the culprit, whose position and error are recorded and
logged; the other projections keep going.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from eventsourcing.persistence import Notification

from membership import Organizations
from projections import tracking
from projections.background import BackgroundLoop
from projections.base import Projection, apply_batch
from projections.catalog import PROJECTIONS
from projections.decoding import ProjectionDecoder
from projections.events import read_batch
from projections.sql import Cursor, ReadDatabase

log = logging.getLogger(__name__)
Batch = list[tuple[int, Any]]
LISTEN_TIMEOUT_S = 0.1  # also how long stop() may wait for the listener


class ProjectionFailedError(Exception):
    """A projection could not apply an event; it stays stopped until restarted."""


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
        self.failed: dict[str, str] = {}
        self._instances: dict[tuple[str, int], Projection] = {}
        self._listener: Any = None

    # -- one step ----------------------------------------------------------
    def run_once(self) -> int:
        """Apply the next batch of events; returns how many were read (0 when caught up)."""
        healthy = [name for name in self.names if name not in self.failed]
        if not healthy:
            return 0
        start = self._lowest_position(healthy)
        notifications = read_batch(self.organizations, start, self.batch_size)
        if not notifications:
            return 0
        batch = self._decode(notifications, healthy)
        last = notifications[-1].id
        try:
            with self.db.transaction() as cursor:
                for name in healthy:
                    self._apply(cursor, name, batch, last)
        except Exception:
            self._forget_uncommitted()
            self._apply_separately(healthy, batch, last)
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
        self._listener = None if self.db.is_sqlite else self.db.listen_connection(self._channel())
        try:
            super().run_forever()
        finally:
            if self._listener is not None:
                self._listener.close()

    def idle(self) -> None:
        if self._listener is None:
            super().idle()
            return
        for _ in self._listener.notifies(timeout=LISTEN_TIMEOUT_S, stop_after=1):
            pass
        self._wake.clear()

    def _channel(self) -> str:
        return f"{self.organizations.name.lower()}_events"

    # -- applying ----------------------------------------------------------
    def _apply(self, cursor: Cursor, name: str, batch: Batch, last: int) -> None:
        active = tracking.lock_generation(self.db, cursor, name, tracking.ACTIVE)
        if active is None or active.position >= last:
            return  # being switched by a rebuild right now, or another runner got here first
        apply_batch(self.db, cursor, self._projection(name, active.generation), batch, active.position)
        tracking.set_position(self.db, cursor, name, active.generation, last)
        if active.error:
            tracking.clear_error(self.db, cursor, name, active.generation)

    def _apply_separately(self, names: Sequence[str], batch: Batch, last: int) -> None:
        """After a failed batch: each projection alone, then each event alone for the one that fails."""
        for name in names:
            try:
                with self.db.transaction() as cursor:
                    self._apply(cursor, name, batch, last)
            except Exception:
                self._forget_uncommitted()
                self._find_failure(name, batch, last)

    def _find_failure(self, name: str, batch: Batch, last: int) -> None:
        for index, (position, event) in enumerate(batch):
            try:
                with self.db.transaction() as cursor:
                    upto = batch[index + 1][0] - 1 if index + 1 < len(batch) else last
                    self._apply(cursor, name, [(position, event)], upto)
            except Exception as error:
                self._forget_uncommitted()
                self._record_failure(name, position, event, error)
                return

    def _record_failure(self, name: str, position: int, event: Any, error: Exception) -> None:
        message = f"{type(event).__name__} at position {position}: {type(error).__name__}: {error}"
        log.error("projection %r stopped: %s", name, message, exc_info=error)
        self.failed[name] = message
        with self.db.transaction() as cursor:
            active = tracking.lock_generation(self.db, cursor, name, tracking.ACTIVE)
            if active is not None:
                tracking.record_error(self.db, cursor, name, active.generation, position, message)

    def _decode(self, notifications: Sequence[Notification], names: Sequence[str]) -> Batch:
        batch: Batch = []
        for notification in notifications:
            try:
                batch.append((notification.id, self.decoder.decode(notification)))
            except Exception as error:
                for name in names:
                    self._record_failure(name, notification.id, notification, error)
                raise ProjectionFailedError(f"cannot decode event {notification.id}") from error
        return batch

    def _lowest_position(self, names: Sequence[str]) -> int:
        with self.db.snapshot() as cursor:
            generations = tracking.all_generations(self.db, cursor)
        positions = [g.position for g in generations if g.state == tracking.ACTIVE and g.name in names]
        return min(positions, default=0)

    def _projection(self, name: str, generation: int) -> Projection:
        key = (name, generation)
        if key not in self._instances:
            self._instances[key] = PROJECTIONS[name](generation)
        return self._instances[key]

    def _forget_uncommitted(self) -> None:
        for projection in self._instances.values():
            forget = getattr(projection, "forget_uncommitted", None)
            if forget is not None:
                forget()
