"""Set-up, status and read-your-writes over all projections."""

from __future__ import annotations

import time
from dataclasses import dataclass

from projections import tracking
from projections.catalog import PROJECTIONS
from projections.sql import ReadDatabase

FIRST_GENERATION = 1


class ReadModelLaggingError(Exception):
    """The read models did not include a command's events in time (HTTP 503)."""


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    generation: int
    state: str
    position: int
    lag: int
    error: str | None


def setup(db: ReadDatabase) -> None:
    """Create the tables of every projection that has none yet (safe to run from many processes)."""
    with db.transaction() as cursor:
        if not db.is_sqlite:
            # Concurrent CREATE TABLE IF NOT EXISTS can collide in pg_type: serialise set-up.
            cursor.execute("SELECT pg_advisory_xact_lock(724001)")
        tracking.create_table(db, cursor)
        tracking.create_shares_table(db, cursor)
        # Member activity is telemetry, not a domain fact: outside the projections, kept across rebuilds.
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS member_activity (organization_id TEXT NOT NULL, user_id TEXT NOT NULL,"
            f" last_active_at {db.type('ts')} NOT NULL, PRIMARY KEY (organization_id, user_id))"
        )
        known = {g.name for g in tracking.all_generations(db, cursor)}
        for name, projection_class in PROJECTIONS.items():
            if name not in known:
                projection_class(FIRST_GENERATION).create_tables(db, cursor)
                tracking.insert_generation(db, cursor, name, FIRST_GENERATION, tracking.ACTIVE)


def wait_for(db: ReadDatabase, position: int | None, timeout: float = 5.0) -> None:
    """Return once every projection has applied `position`; raise ReadModelLaggingError past `timeout`.

    Polls every 1-5 ms: a command's response should follow its event within milliseconds.
    """
    if position is None:
        return
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        with db.snapshot() as cursor:
            generations = [g for g in tracking.all_generations(db, cursor) if g.state == tracking.ACTIVE]
        failed = [g for g in generations if g.error and g.position < position]
        if failed:
            raise ReadModelLaggingError(f"the {failed[0].name!r} read model stopped: {failed[0].error}")
        if generations and min(g.position for g in generations) >= position:
            return
        if time.monotonic() >= deadline:
            raise ReadModelLaggingError(f"the read models have not reached position {position} after {timeout} s")
        time.sleep(pause)
        pause = min(pause * 2, 0.005)


def status(db: ReadDatabase, latest_position: int) -> list[ProjectionStatus]:
    with db.snapshot() as cursor:
        generations = tracking.all_generations(db, cursor)
    return [
        ProjectionStatus(g.name, g.generation, g.state, g.position, max(latest_position - g.position, 0), g.error)
        for g in generations
    ]
