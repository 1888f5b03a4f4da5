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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from membership import Organizations
from projections import tracking
from projections.base import Projection
from projections.catalog import PROJECTIONS
from projections.sql import Cursor, ReadDatabase

log = logging.getLogger(__name__)
REBUILD_BATCH = 5000
RETIRED_GRACE_S = 5.0  # readers that resolved the old generation just before the switch finish within this


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
    ) -> None:
        unknown = sorted(set(names) - set(PROJECTIONS))
        if unknown:
            raise ValueError(f"unknown projections: {', '.join(unknown)} (known: {', '.join(PROJECTIONS)})")
        self.organizations = organizations
        self.db = db
        self.names = sorted(names)
        self.batch_size = batch_size
        self.on_progress = on_progress or (lambda count: None)
        self.retired_grace_s = retired_grace_s

    def run(self, restart: bool = False) -> dict[str, int]:
        """Build, catch up and switch; returns the new active generation of each projection."""
        builds = [self._prepare(name, restart) for name in self.names]
        while self._step(builds):
            pass
        retired = [build.name for build in builds if self._switch(build)]
        if retired:
            time.sleep(self.retired_grace_s)  # once, however many projections were switched
            for name in retired:
                self._drop_retired(name)
        return {build.name: build.projection.generation for build in builds}

    def start_position(self) -> int:
        """Where the next batch starts (for progress bars that resume)."""
        with self.db.snapshot() as cursor:
            generations = tracking.all_generations(self.db, cursor)
        building = [g.position for g in generations if g.state == tracking.BUILDING and g.name in self.names]
        return min(building, default=0)

    # -- steps -------------------------------------------------------------
    def _prepare(self, name: str, restart: bool) -> Build:
        self._drop_retired(name)  # left over by a rebuild stopped during its grace period
        with self.db.transaction() as cursor:
            building = tracking.lock_generation(self.db, cursor, name, tracking.BUILDING)
            if building is not None and restart:
                PROJECTIONS[name](building.generation).drop_tables(cursor)
                tracking.delete_generation(self.db, cursor, name, building.generation)
                building = None
            if building is not None:
                log.info("rebuild of %r resumes at position %s", name, building.position)
                return Build(PROJECTIONS[name](building.generation), building.position)
            generation = 1 + max(g.generation for g in tracking.all_generations(self.db, cursor) if g.name == name)
            projection = PROJECTIONS[name](generation)
            projection.create_tables(self.db, cursor)
            tracking.insert_generation(self.db, cursor, name, generation, tracking.BUILDING)
            return Build(projection, 0)

    def _step(self, builds: list[Build]) -> bool:
        """One batch into every build; False once there is nothing left to read."""
        start = min(build.position for build in builds)
        notifications = self.organizations.recorder.select_notifications(start=start + 1, limit=self.batch_size)
        if not notifications:
            return False
        batch = [(n.id, self.organizations.mapper.to_domain_event(n)) for n in notifications]
        for build in builds:
            with self.db.transaction() as cursor:
                self._apply(cursor, build, batch, tracking.BUILDING)
        self.on_progress(notifications[-1].id - start)
        return True

    def _switch(self, build: Build) -> bool:
        """Make the build active; True when an older generation was retired (to drop after the grace period)."""
        with self.db.transaction() as cursor:
            active = tracking.lock_generation(self.db, cursor, build.name, tracking.ACTIVE)
            # Under the active row's lock no runner can advance: apply the last events, then swap.
            while notifications := self.organizations.recorder.select_notifications(
                start=build.position + 1, limit=self.batch_size
            ):
                batch = [(n.id, self.organizations.mapper.to_domain_event(n)) for n in notifications]
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
                    tracking.delete_generation(self.db, cursor, name, generation.generation)

    def _apply(self, cursor: Cursor, build: Build, batch: Sequence[tuple[int, Any]], state: str) -> None:
        generation = tracking.lock_generation(self.db, cursor, build.name, state)
        assert generation is not None and generation.generation == build.projection.generation
        writer = build.projection.writer(self.db, cursor)
        with self.db.pipelined(cursor):
            for position, event in batch:
                if position > generation.position:
                    writer.position = position
                    build.projection.handle(event, writer)
        build.projection.flush(writer)  # outside the pipeline: it may COPY
        last = batch[-1][0]
        if last > generation.position:
            tracking.set_position(self.db, cursor, build.name, build.projection.generation, last)
            build.position = last
