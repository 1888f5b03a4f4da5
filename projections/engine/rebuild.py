"""Blue/green rebuild: replay every event into a new generation, then switch.

Readers and the live runner keep using the active generation throughout. The
new one is filled in large batches (many events per transaction, each with
its position), and becomes active in one transaction that first applies the
last few events under the active row's lock: readers never see a half-built
table. Interrupted, a rebuild resumes from its recorded position when run
again (or starts over with `restart=True`). `progress()` says, in events, how
much is done and how much there is to do, so that a resumed rebuild's progress
bar starts where it stopped and ends at 100 %.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from membership import Organizations
from membership.database import Database
from projections.engine import parallel, parking, tracking
from projections.engine.base import Projection, apply_batch
from projections.engine.catalog import PROJECTIONS, fingerprints
from projections.engine.decoding import ProjectionDecoder
from projections.engine.eventlog import count_by_aggregate, read_batch
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


@dataclass(frozen=True)
class Progress:
    """How much of a rebuild is done and how much it has in all, in events (positions, outside a parallel fill)."""

    done: int
    total: int


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
        on_plan: Callable[[Progress], None] | None = None,  # called once the rebuild knows its work (see progress)
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
        # Again once a parallel fill is planned (its shares counted): a progress bar's total can then be exact.
        self.on_plan = on_plan or (lambda progress: None)
        self.retired_grace_s = retired_grace_s
        self.database = database
        self.workers = workers
        self.parallel_min_events = parallel_min_events
        self.skipped: dict[str, frozenset[int]] = {}  # by projection: events operators had it skip

    def run(self, restart: bool = False) -> dict[str, int]:
        """Build, catch up and switch; returns the new active generation of each projection."""
        self.skipped = skipped_positions(self.organizations, self.names)
        builds = [self._prepare(name, restart) for name in self.names]
        self.on_plan(self.progress())
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
        """Where the slowest projection being built is: its position, or that of its slowest share."""
        with self.db.snapshot() as cursor:
            building = self._building(cursor)
            shares = tracking.all_shares(self.db, cursor)
        positions = [
            min(share.position for share in shares[key]) if key in shares else g.position
            for g in building
            for key in [(g.name, g.generation)]
        ]
        return min(positions, default=0)

    def progress(self) -> Progress:
        """How much of the rebuild is done, of how much, in events (for progress bars that resume).

        Outside a parallel fill, positions: from the slowest projection's to the latest. In a parallel fill, the
        events its shares have applied, of those they have in all, then the positions after its target.
        """
        latest = self.organizations.recorder.max_notification_id() or 0
        with self.db.snapshot() as cursor:
            generations = {g.name: g.generation for g in self._building(cursor)}
            filled = parallel.progress(self.db, cursor, generations)
        if filled is None:
            start = self.start_position()
            return Progress(start, max(latest, start))
        return Progress(filled.done, filled.total + max(latest - filled.target, 0))

    def _building(self, cursor: Cursor) -> list[tracking.Generation]:
        generations = tracking.all_generations(self.db, cursor)
        return [g for g in generations if g.state == tracking.BUILDING and g.name in self.names]

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
                self._log_resume(cursor, building)
                return Build(PROJECTIONS[name](building.generation), building.position)
            generation = 1 + max(g.generation for g in tracking.all_generations(self.db, cursor) if g.name == name)
            projection = PROJECTIONS[name](generation)
            projection.create_tables(self.db, cursor, with_indexes=False)  # run() adds them once filled
            tracking.insert_generation(self.db, cursor, name, generation, tracking.BUILDING, fingerprints(name))
            return Build(projection, 0)

    def _log_resume(self, cursor: Cursor, building: tracking.Generation) -> None:
        """Where the build resumes: its position, or in a parallel fill its shares' (its own stays put)."""
        shares = tracking.shares(self.db, cursor, building.name, building.generation)
        if not shares:
            log.info("rebuild of %r resumes at position %s", building.name, building.position)
            return
        log.info(
            "rebuild of %r resumes at position %s (its slowest share; shares at %s, each filling up to %s)",
            building.name, min(share.position for share in shares), _describe(shares),
            shares[0].target if shares[0].target is not None else "the latest position",
        )  # fmt: skip

    def _fill_in_parallel(self, builds: list[Build]) -> None:
        """Bring every build to the fill's target with one process per share (see projections.engine.parallel).

        Runs when the fill is big enough, or when an interrupted parallel fill left shares to resume.
        """
        if self.database is None or self.db.is_sqlite:
            return
        with self.db.snapshot() as cursor:
            shares = {b.name: tracking.shares(self.db, cursor, b.name, b.projection.generation) for b in builds}
        counts = {share.parts for found in shares.values() for share in found}
        if len(counts) > 1:
            raise RuntimeError("interrupted parallel rebuilds with different process counts: rebuild with --restart")
        targets = {share.target for found in shares.values() for share in found}
        if len(targets) > 1:  # fills begun apart, or one begun before shares were balanced (no target) and one since
            raise RuntimeError("interrupted parallel rebuilds with different targets: rebuild with --restart")
        # A resumed fill stops where it was to stop: the events after it are the catch-up's, as are new aggregates.
        target = targets.pop() if targets else None
        if target is None:
            target = self.organizations.recorder.max_notification_id() or 0
        start = min(build.position for build in builds)
        if not counts and (self.workers < 2 or target - start < self.parallel_min_events):
            return
        parts = counts.pop() if counts else self.workers
        builds = [build for build in builds if shares[build.name] or build.position < target]  # the others are past it
        if not builds:
            return
        self._deal(builds, shares, parts, target)
        self.on_plan(self.progress())
        generations = {build.name: build.projection.generation for build in builds}
        with self.db.snapshot() as cursor:
            dealt = tracking.shares(self.db, cursor, *min(generations.items()))
        log.info(
            "rebuild: filling %s with %d processes up to position %d (shares of %s events)",
            ", ".join(generations), parts, target, ", ".join(f"{share.events:,}" for share in dealt),
        )  # fmt: skip
        codec = {name: self.organizations.env.get(name) or "" for name in parallel.CODEC}
        if self.organizations.personal_keys is not None:  # the children open sealed personal data too
            codec.update(self.organizations.personal_keys.masters.as_codec())
        parallel.fill(self.database, codec, self.db, generations, parts, target, self.batch_size, self.on_progress)
        with self.db.transaction() as cursor:
            for build in builds:
                tracking.lock_generation(self.db, cursor, build.name, tracking.BUILDING)
                tracking.set_position(self.db, cursor, build.name, build.projection.generation, target)
                tracking.delete_shares(self.db, cursor, build.name, build.projection.generation)
                build.position = target

    def _deal(
        self, builds: list[Build], shares: dict[str, list[tracking.ShareProgress]], parts: int, target: int
    ) -> None:
        """Record the shares and the deal of aggregates of the builds that have none yet, in one transaction.

        Every build of a fill gets the same deal: a fresh fill deals the aggregates by their events from the first
        up to `target` (so that a build joining later, at any position, finds all its aggregates dealt); a build
        joining an interrupted fill copies its deal; shares recorded before the deals (no target) go on dealing by
        the last byte of the id, and are counted now. Each share counts its events from its own position.
        """
        dealing = [build for build in builds if not shares[build.name] or shares[build.name][0].target is None]
        if not dealing:
            return
        with self.db.snapshot() as cursor:
            dealt = next(
                (
                    found
                    for build in builds
                    if (found := tracking.share_aggregates(self.db, cursor, build.name, build.projection.generation))
                ),
                None,
            )
        counted: dict[int, dict[UUID, int]] = {}  # events per aggregate after a position, counted once per position

        def counts(after: int) -> dict[UUID, int]:
            if after not in counted:
                counted[after] = count_by_aggregate(self.organizations, after, target)
            return counted[after]

        if dealt is None:
            legacy = any(shares[build.name] for build in builds)
            dealt = parallel.by_last_byte(counts(0), parts) if legacy else parallel.deal(counts(0), parts)
        with self.db.transaction() as cursor:
            for build in dealing:
                generation = build.projection.generation
                positions = {share.part: share.position for share in shares[build.name]}
                rows = []
                for part in range(parts):
                    position = positions.get(part, build.position)
                    events = parallel.share_events(counts(position), dealt, parts)[part]
                    rows.append(tracking.ShareProgress(part, parts, position, target, events))
                tracking.delete_shares(self.db, cursor, build.name, generation)
                tracking.insert_shares(self.db, cursor, build.name, generation, rows)
                tracking.insert_share_aggregates(self.db, cursor, build.name, generation, dealt)

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


def _describe(shares: list[tracking.ShareProgress]) -> str:
    """'41200 (70 %), 39800 (68 %)': each share's position, and how much of its events it has applied."""
    return ", ".join(
        f"{share.position}" + (f" ({share.percent:.0f} %)" if share.percent is not None else "") for share in shares
    )
