"""Set-up, status and read-your-writes over all projections."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from projections.engine import parking, tracking
from projections.engine.catalog import PROJECTIONS, fingerprints
from projections.engine.sql import Cursor, ReadDatabase

FIRST_GENERATION = 1
RELAYED_RECHECK_S = 0.05  # wait_for: how long it trusts a relayed runner to wake it
TableOwner = Callable[[ReadDatabase, Cursor], None]  # creates its tables if missing, in the given transaction


STALLED_AFTER_S = 30.0  # events waiting, and the position has not moved for this long


class ReadModelLaggingError(Exception):
    """The read models did not include a command's events in time (HTTP 503)."""


class OrganizationDegradedError(Exception):
    """A read model holds this organization's events back (projections.engine.parking): its reads
    cannot be trusted until an operator retries or skips the event (HTTP 503)."""

    def __init__(self, parked: parking.ParkedEvent) -> None:
        super().__init__(
            f"the {parked.name!r} read model could not apply this organization's {parked.event_type} event"
            f" at position {parked.position} and holds its later events back"
        )
        self.parked = parked


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    generation: int
    state: str
    position: int
    lag: int
    error: str | None  # the projection's own tables fail (it is retried meanwhile)
    updated_at: datetime | None  # when the position last moved
    parked: int  # organizations (or jobs) whose events it holds back

    @property
    def stalled(self) -> bool:
        """Active, events waiting, and no progress for a while (or its tables fail)."""
        if self.state != tracking.ACTIVE or self.lag == 0:
            return False
        idle = (datetime.now(UTC) - self.updated_at).total_seconds() if self.updated_at else STALLED_AFTER_S
        return bool(self.error) or idle >= STALLED_AFTER_S


def setup(db: ReadDatabase, *others: TableOwner) -> None:
    """Create the tables of every projection that has none yet, and those of `others` (the
    service's operational state), in one transaction. Safe to run from many processes: call it
    under `db.schema_lock()`."""
    with db.transaction() as cursor:
        db.install_extensions(cursor)
        tracking.create_table(db, cursor)
        tracking.create_shares_table(db, cursor)
        parking.create_table(db, cursor)
        for create_tables in others:
            create_tables(db, cursor)
        known = {g.name for g in tracking.all_generations(db, cursor)}
        for name, projection_class in PROJECTIONS.items():
            if name not in known:
                projection_class(FIRST_GENERATION).create_tables(db, cursor)
                tracking.insert_generation(db, cursor, name, FIRST_GENERATION, tracking.ACTIVE, fingerprints(name))
            else:
                tracking.fill_missing_fingerprints(db, cursor, name, fingerprints(name))


def wait_for(db: ReadDatabase, position: int | None, timeout: float = 5.0, organization_id: str | None = None) -> None:
    """Return once every projection has applied `position`; raise ReadModelLaggingError past `timeout`,
    or OrganizationDegradedError if a read model holds the organization's events back.

    A command's response should follow its event within milliseconds: it looks again whenever a runner
    commits (one of this process, or another's NOTIFY on PostgreSQL); failing both, it polls every 1-5 ms.
    """
    if position is None:
        return
    if not db.progress.runners:
        db.follow_applied()
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        commits = db.progress.commits  # before looking: a commit from now on ends the wait below at once
        with db.snapshot() as cursor:
            generations = [g for g in tracking.all_generations(db, cursor) if g.state == tracking.ACTIVE]
            reached = bool(generations) and min(g.position for g in generations) >= position
            parked = parking.degradation(db, organization_id, cursor) if reached and organization_id else None
        failed = [g for g in generations if g.error and g.position < position]
        if failed:
            raise ReadModelLaggingError(f"the {failed[0].name!r} read model cannot apply events: {failed[0].error}")
        if reached:
            if parked is not None:
                raise OrganizationDegradedError(parked)
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadModelLaggingError(f"the read models have not reached position {position} after {timeout} s")
        if db.progress.relayed:
            # Looks again at least every RELAYED_RECHECK_S: a rebuild in another process may switch a generation.
            db.progress.wait(commits, min(remaining, RELAYED_RECHECK_S))
        else:
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.005)


def status(db: ReadDatabase, latest_position: int) -> list[ProjectionStatus]:
    """Every generation: where it is, how far behind, whether it is stuck, how many aggregates it holds back."""
    with db.snapshot() as cursor:
        generations = tracking.all_generations(db, cursor)
        cursor.execute(f"SELECT name, generation, COUNT(*) FROM {parking.TABLE} GROUP BY name, generation")
        parked = {(name, int(generation)): int(count) for name, generation, count in cursor.fetchall()}
    return [
        ProjectionStatus(
            g.name,
            g.generation,
            g.state,
            g.position,
            max(latest_position - g.position, 0),
            g.error,
            g.updated_at,
            parked.get((g.name, g.generation), 0),
        )  # fmt: skip
        for g in generations
    ]
