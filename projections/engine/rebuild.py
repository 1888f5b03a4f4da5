"""Blue/green rebuild: replay every event into a new generation, then switch.

Readers and the live runner keep using the active generation throughout. The
new one is filled in large batches (many events per transaction, each with
its position), and becomes active in one transaction that first applies the
last few events under the active row's lock: readers never see a half-built
table. Interrupted, a rebuild resumes from its recorded position when run
again (or starts over with `restart=True`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from membership import Organizations
from membership.database import Database
from projections.engine import parallel, parking, tracking
from projections.engine.base import Projection, apply_batch
from projections.engine.catalog import PROJECTIONS, fingerprints
from projections.engine.decoding import ProjectionDecoder
from projections.engine.eventlog import read_batch
from projections.engine.retrying import apply_or_park, generation_target, is_item_failure, skipped_positions, without
from projections.engine.sql import Cursor, ReadDatabase

log = logging.getLogger(__name__)
REBUILD_BATCH = 5000
RETIRED_GRACE_S = 5.0  # readers that resolved the old generation just before the switch finish within this
INDEX_SORT_MEMORY = "256MB"  # per index being built (the default 64MB spills big sorts to disk)
PARALLEL_MIN_EVENTS = 100_000  # below this, starting processes costs more than it saves


def default_workers() -> int:
    """Processes for a parallel fill: one per CPU, up to 4 (the database needs CPU too)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Build:
    projection: Projection
    position: int

    @property
    def name(self) -> str:
        return self.projection.name


class Rebuild:
    """Rebuilds some projections together, reading and decoding each event once."""

    def __init__(
        self,
        organizations: Organizations,
        db: ReadDatabase,
        names: Sequence[str],
        batch_size: int = REBUILD_BATCH,
        on_progress: Callable[[int], None] | None = None,  # called with how many positions were passed
        retired_grace_s: float = RETIRED_GRACE_S,
        database: Database | None = None,  # given, PostgreSQL fills big rebuilds with several processes
        workers: int = 1,
        parallel_min_events: int = PARALLEL_MIN_EVENTS,
    ) -> None:
        unknown = sorted(set(names) - set(PROJECTIONS))
        if unknown:
            raise ValueError(f"unknown projections: {', '.join(unknown)} (known: {', '.join(PROJECTIONS)})")
        self.organizations = organizations
        self.decoder = ProjectionDecoder(organizations.mapper)
        self.db = db
        self.names = sorted(names)
        self.batch_size = batch_size
        self.on_progress = on_progress or (lambda count: None)
        self.retired_grace_s = retired_grace_s
        self.database = database
        self.workers = workers
        self.parallel_min_events = parallel_min_events
        self.skipped: dict[str, frozenset[int]] = {}  # by projection: events operators had it skip

    def run(self, restart: bool = False) -> dict[str, int]:
        """Build, catch up and switch; returns the new active generation of each projection."""
        self.skipped = skipped_positions(self.organizations, self.names)
        builds = [self._prepare(name, restart) for name in self.names]
        self._fill_in_parallel(builds)
        while self._step(builds):
            pass
        self._create_indexes(builds)
        retired = [build.name for build in builds if self._switch_when_caught_up(builds, build)]
        if retired:
            time.sleep(self.retired_grace_s)  # once, however many projections were switched
            for name in retired:
                self._drop_retired(name)
        return {build.name: build.projection.generation for build in builds}

    def start_position(self) -> int:
        """Where the next batch starts (for progress bars that resume)."""
        with self.db.snapshot() as cursor:
            generations = tracking.all_generations(self.db, cursor)
            building = [g for g in generations if g.state == tracking.BUILDING and g.name in self.names]
            positions = [g.position for g in building]
            for g in building:  # a parallel fill in progress: its slowest share
                positions += tracking.share_positions(self.db, cursor, g.name, g.generation).values()
        return min(positions, default=0)

    # -- steps -------------------------------------------------------------
    def _prepare(self, name: str, restart: bool) -> Build:
        self._drop_retired(name)  # left over by a rebuild stopped during its grace period
        with self.db.transaction() as cursor:
            building = tracking.lock_generation(self.db, cursor, name, tracking.BUILDING)
            # A build started with another definition (an earlier release) cannot be resumed with this one.
            stale = building is not None and building.fingerprint not in (None, PROJECTIONS[name].fingerprint())
            if building is not None and (restart or stale):
                PROJECTIONS[name](building.generation).drop_tables(cursor)
                parking.drop_generation(self.db, cursor, name, building.generation)
                tracking.delete_shares(self.db, cursor, name, building.generation)
                tracking.delete_generation(self.db, cursor, name, building.generation)
                building = None
            if building is not None:
                log.info("rebuild of %r resumes at position %s", name, building.position)
                return Build(PROJECTIONS[name](building.generation), building.position)
            generation = 1 + max(g.generation for g in tracking.all_generations(self.db, cursor) if g.name == name)
            projection = PROJECTIONS[name](generation)
            projection.create_tables(self.db, cursor, with_indexes=False)  # run() adds them once filled
            tracking.insert_generation(self.db, cursor, name, generation, tracking.BUILDING, fingerprints(name))
            return Build(projection, 0)

    def _fill_in_parallel(self, builds: list[Build]) -> None:
        """Bring every build to the latest position with one process per share (see projections.engine.parallel).

        Runs when the fill is big enough, or when an interrupted parallel fill left shares to resume.
        """
        if self.database is None or self.db.is_sqlite:
            return
        with self.db.snapshot() as cursor:
            shares = {
                b.name: tracking.share_positions(self.db, cursor, b.name, b.projection.generation) for b in builds
            }
        counts = {parts for positions in shares.values() for _, parts in positions}
        if len(counts) > 1:
            raise RuntimeError("interrupted parallel rebuilds with different process counts: rebuild with --restart")
        target = self.organizations.recorder.max_notification_id() or 0
        start = min(build.position for build in builds)
        if not counts and (self.workers < 2 or target - start < self.parallel_min_events):
            return
        parts = counts.pop() if counts else self.workers
        with self.db.transaction() as cursor:
            for build in builds:
                if not shares[build.name]:
                    tracking.insert_shares(
                        self.db, cursor, build.name, build.projection.generation, parts, build.position
                    )
        generations = {build.name: build.projection.generation for build in builds}
        log.info("rebuild: filling %s with %d processes up to position %d", ", ".join(generations), parts, target)
        codec = {name: self.organizations.env.get(name) or "" for name in parallel.CODEC}
        parallel.fill(self.database, codec, self.db, generations, parts, target, self.batch_size, self.on_progress)
        with self.db.transaction() as cursor:
            for build in builds:
                tracking.lock_generation(self.db, cursor, build.name, tracking.BUILDING)
                tracking.set_position(self.db, cursor, build.name, build.projection.generation, target)
                tracking.delete_shares(self.db, cursor, build.name, build.projection.generation)
                build.position = target

    def _create_indexes(self, builds: list[Build]) -> None:
        """Every build's secondary indexes; on PostgreSQL several at once (each sorts its table on a core)."""
        with self.db.snapshot() as cursor:
            extensions = self.db.extensions(cursor)
        statements = [statement for build in builds for statement in build.projection.index_statements(extensions)]

        def create(statement: str) -> None:
            with self.db.transaction() as cursor:
                if not self.db.is_sqlite:
                    cursor.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_SORT_MEMORY}'")  # sort in memory
                cursor.execute(statement)

        with ThreadPoolExecutor(1 if self.db.is_sqlite else max(1, self.workers)) as pool:
            list(pool.map(create, statements))
        if not self.db.is_sqlite:
            # Statistics before the switch: without them the planner guesses, and may scan a whole table where
            # an index would serve (a member search on 100,000 rows: 200 ms instead of 15). Autovacuum would
            # get there too, but only after the new tables have answered for a while.
            tables = [table for build in builds for table in build.projection.table_names.values()]
            with self.db.transaction() as cursor:
                cursor.execute(f"ANALYZE {', '.join(tables)}")

    def _step(self, builds: list[Build]) -> bool:
        """One batch into every build; False once there is nothing left to read."""
        start = min(build.position for build in builds)
        notifications = read_batch(self.organizations, start, self.batch_size)
        if not notifications:
            return False
        batch = self.decoder.batch(notifications)
        for build in builds:
            try:
                with self.db.transaction(wait_for_disk=False) as cursor:
                    self._apply(cursor, build, batch, tracking.BUILDING)
            except Exception as error:
                build.projection.forget_uncommitted()
                if not is_item_failure(error):
                    raise
                target = generation_target(self.db, build.name, build.projection.generation, tracking.BUILDING)
                skipped = without(batch, self.skipped.get(build.name, frozenset()))
                apply_or_park(self.db, self.organizations, build.projection, target, skipped, batch[-1][0])
                build.position = batch[-1][0]
        self.on_progress(notifications[-1].id - start)
        return True

    def _switch_when_caught_up(self, builds: list[Build], build: Build) -> bool:
        """Switch; should one of the last events fail under the lock, park it outside the lock and try again."""
        while True:
            try:
                return self._switch(build)
            except Exception as error:
                build.projection.forget_uncommitted()
                if not is_item_failure(error):
                    raise
                with self.db.snapshot() as cursor:  # what the rolled-back transaction had applied is gone
                    building = tracking.lock_generation(self.db, cursor, build.name, tracking.BUILDING)
                    assert building is not None
                    build.position = building.position
                self._step([build])

    def _switch(self, build: Build) -> bool:
        """Make the build active; True when an older generation was retired (to drop after the grace period)."""
        with self.db.transaction() as cursor:
            active = tracking.lock_generation(self.db, cursor, build.name, tracking.ACTIVE)
            # Under the active row's lock no runner can advance: apply the last events, then swap.
            while notifications := read_batch(self.organizations, build.position, self.batch_size):
                batch = self.decoder.batch(notifications)
                self.on_progress(notifications[-1].id - build.position)
                self._apply(cursor, build, batch, tracking.BUILDING)
            if active is not None:
                tracking.set_state(self.db, cursor, build.name, active.generation, tracking.RETIRED)
            tracking.set_state(self.db, cursor, build.name, build.projection.generation, tracking.ACTIVE)
        log.info("projection %r now reads generation %s", build.name, build.projection.generation)
        return active is not None

    def _drop_retired(self, name: str) -> None:
        with self.db.transaction() as cursor:
            for generation in tracking.all_generations(self.db, cursor):
                if generation.name == name and generation.state == tracking.RETIRED:
                    PROJECTIONS[name](generation.generation).drop_tables(cursor)
                    parking.drop_generation(self.db, cursor, name, generation.generation)
                    tracking.delete_generation(self.db, cursor, name, generation.generation)

    def _apply(self, cursor: Cursor, build: Build, batch: Sequence[tuple[int, Any]], state: str) -> None:
        """Apply the batch (but the events operators had skipped) and record how far the build got."""
        last = batch[-1][0]
        batch = without(batch, self.skipped.get(build.name, frozenset()))
        generation = tracking.lock_generation(self.db, cursor, build.name, state)
        assert generation is not None and generation.generation == build.projection.generation
        held = parking.held(self.db, cursor, build.name, generation.generation)
        apply_batch(self.db, cursor, build.projection, batch, generation.position, held)
        if last > generation.position:
            tracking.set_position(self.db, cursor, build.name, build.projection.generation, last)
            build.position = last
