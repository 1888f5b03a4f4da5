"""Parked events: what one read model could not apply, held back for one aggregate only.

EventStoreDB parks the messages a subscriber keeps failing on; Marten moves the
events a projection cannot apply to a dead-letter queue. Here, an event a
projection still cannot apply after a few attempts *parks its aggregate* in
that projection: the event and every later event of the same aggregate (an
organization, or a bulk job) are held back, while the projection's position
moves on for everybody else. The organization's reads and commands answer 503
with the reason (see `degradation`) until an operator retries (after a fix)
or skips the event (`membership projections retry|skip`).

One row per (projection, generation, aggregate): `position` is the first
event not applied; every later event of the aggregate up to the generation's
position is waiting too, and is re-read from the event log on retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.engine import tracking
from projections.engine.sql import Cursor, ReadDatabase

TABLE = "parked_events"
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class ParkedEvent:
    name: str  # the projection
    generation: int
    aggregate_id: str
    organization_id: str | None
    position: int  # the first event of the aggregate not applied
    event_type: str
    error: str
    attempts: int
    parked_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "projection": self.name,
            "generation": self.generation,
            "aggregateId": self.aggregate_id,
            "organizationId": self.organization_id,
            "position": self.position,
            "eventType": self.event_type,
            "error": self.error,
            "attempts": self.attempts,
            "parkedAt": self.parked_at.isoformat(),
        }


def create_table(db: ReadDatabase, cursor: Cursor) -> None:
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT NOT NULL, generation INTEGER NOT NULL, "
        f"aggregate_id TEXT NOT NULL, organization_id TEXT, position {db.type('bigint')} NOT NULL, "
        f"event_type TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, parked_at {db.type('ts')} NOT NULL, "
        "PRIMARY KEY (name, generation, aggregate_id))"
    )
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_by_organization ON {TABLE} (organization_id)")


def held(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> frozenset[str]:
    """The aggregates whose events this generation holds back (usually none)."""
    return held_by(db, cursor, [(name, generation)]).get((name, generation), frozenset())


def held_by(
    db: ReadDatabase, cursor: Cursor, generations: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], frozenset[str]]:
    """`held` for several (projection, generation) pairs in one statement; pairs holding nothing back are absent."""
    names = sorted({name for name, _ in generations})
    marks = ", ".join(["%s"] * len(names))
    cursor.execute(db.sql(f"SELECT name, generation, aggregate_id FROM {TABLE} WHERE name IN ({marks})"), names)
    found: dict[tuple[str, int], set[str]] = {}
    for name, generation, aggregate_id in cursor.fetchall():
        if (name, int(generation)) in generations:
            found.setdefault((name, int(generation)), set()).add(aggregate_id)
    return {key: frozenset(ids) for key, ids in found.items()}


def park(
    db: ReadDatabase,
    cursor: Cursor,
    name: str,
    generation: int,
    aggregate_id: str,
    organization_id: str | None,
    position: int,
    event_type: str,
    error: str,
    attempts: int,
) -> None:
    cursor.execute(
        db.sql(
            f"INSERT INTO {TABLE} (name, generation, aggregate_id, organization_id, position, event_type, error,"
            " attempts, parked_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ),
        (
            name, generation, aggregate_id, organization_id, position, event_type, error[:MAX_ERROR_LENGTH],
            attempts, db.to_db_time(_now()),
        ),
    )  # fmt: skip


def lock(db: ReadDatabase, cursor: Cursor, name: str, generation: int, aggregate_id: str) -> ParkedEvent | None:
    lock_clause = "" if db.is_sqlite else " FOR UPDATE"
    cursor.execute(
        db.sql(f"{_SELECT} WHERE name = %s AND generation = %s AND aggregate_id = %s{lock_clause}"),
        (name, generation, aggregate_id),
    )
    row = cursor.fetchone()
    return None if row is None else _parked(db, row)


def still_failing(
    db: ReadDatabase, cursor: Cursor, parked: ParkedEvent, position: int, event_type: str, error: str
) -> None:
    """A retry met a failing event again (the same one or a later one): it is the one waiting now."""
    cursor.execute(
        db.sql(
            f"UPDATE {TABLE} SET position = %s, event_type = %s, error = %s, attempts = attempts + 1"
            " WHERE name = %s AND generation = %s AND aggregate_id = %s"
        ),
        (position, event_type, error[:MAX_ERROR_LENGTH], parked.name, parked.generation, parked.aggregate_id),
    )


def release(db: ReadDatabase, cursor: Cursor, parked: ParkedEvent) -> None:
    cursor.execute(
        db.sql(f"DELETE FROM {TABLE} WHERE name = %s AND generation = %s AND aggregate_id = %s"),
        (parked.name, parked.generation, parked.aggregate_id),
    )


def drop_generation(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> None:
    cursor.execute(db.sql(f"DELETE FROM {TABLE} WHERE name = %s AND generation = %s"), (name, generation))


def active(db: ReadDatabase, organization_id: str | None = None, limit: int = 1000) -> list[ParkedEvent]:
    """Parked events of the generations readers use, oldest first; optionally of one organization."""
    with db.snapshot() as cursor:
        return active_in(db, cursor, organization_id, limit)


def active_in(db: ReadDatabase, cursor: Cursor, organization_id: str | None, limit: int) -> list[ParkedEvent]:
    """`active`, read in the caller's transaction."""
    where, params = "g.state = %s", [tracking.ACTIVE]
    if organization_id is not None:
        where += " AND p.organization_id = %s"
        params.append(organization_id)
    cursor.execute(
        db.sql(
            f"{_SELECT_P} JOIN {tracking.TABLE} g ON g.name = p.name AND g.generation = p.generation"
            f" WHERE {where} ORDER BY p.parked_at, p.name LIMIT %s"
        ),
        (*params, limit),
    )
    return [_parked(db, row) for row in cursor.fetchall()]


def degradation(db: ReadDatabase, organization_id: str, cursor: Cursor | None = None) -> ParkedEvent | None:
    """Why the organization's read models cannot be trusted right now, or None (the usual answer).
    Read in `cursor`'s transaction when given."""
    if cursor is None:
        with db.snapshot() as own:
            return degradation(db, organization_id, own)
    parked = active_in(db, cursor, organization_id, limit=1)
    return parked[0] if parked else None


_COLUMNS = ("name", "generation", "aggregate_id", "organization_id", "position", "event_type", "error", "attempts",
            "parked_at")  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM {TABLE}"
_SELECT_P = f"SELECT {', '.join('p.' + column for column in _COLUMNS)} FROM {TABLE} p"


def _parked(db: ReadDatabase, row: Sequence[Any]) -> ParkedEvent:
    name, generation, aggregate_id, organization_id, position, event_type, error, attempts, parked_at = row
    return ParkedEvent(
        name, int(generation), aggregate_id, organization_id, int(position), event_type, error, int(attempts),
        db.when(parked_at),
    )  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)
