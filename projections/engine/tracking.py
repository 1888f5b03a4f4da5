"""Where each projection is: its generations, their positions, and failures.

One row per (projection, generation). Exactly one generation per projection is
`active` (what readers read and the runner keeps current); a rebuild adds a
`building` one, makes it active and the old one `retired` in one transaction
when it has caught up, and drops the retired tables after a grace period.
Positions are written in the same transaction as the rows they cover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from projections.engine.sql import Cursor, ReadDatabase

TABLE = "projection_generations"
# A building generation filled by several processes: each share's own position (see projections.engine.parallel).
SHARES_TABLE = "projection_shares"
# Which aggregates each share applies: dealt by event counts when the fill began, kept until it ends (a resumed
# share must apply exactly the aggregates it had before).
SHARE_AGGREGATES_TABLE = "projection_share_aggregates"
ACTIVE, BUILDING, RETIRED = "active", "building", "retired"


@dataclass(frozen=True)
class Generation:
    name: str
    generation: int
    state: str
    position: int
    error: str | None = None
    error_position: int | None = None
    updated_at: datetime | None = None
    fingerprint: str | None = None  # of the projection's definition the generation was built with
    columns_fingerprint: str | None = None  # of its tables' columns alone


def create_table(db: ReadDatabase, cursor: Cursor) -> None:
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "name TEXT NOT NULL, generation INTEGER NOT NULL, state TEXT NOT NULL, "
        f"position {db.type('bigint')} NOT NULL DEFAULT 0, error TEXT, error_position {db.type('bigint')}, "
        f"updated_at {db.type('ts')}, fingerprint TEXT, columns_fingerprint TEXT, PRIMARY KEY (name, generation))"
    )
    # Generations recorded before definitions were fingerprinted: NULL until `store.setup` fills them.
    db.add_missing_columns(cursor, TABLE, {"fingerprint": "TEXT", "columns_fingerprint": "TEXT"})


def create_shares_table(db: ReadDatabase, cursor: Cursor) -> None:
    bigint = db.type("bigint")
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {SHARES_TABLE} ("
        "name TEXT NOT NULL, generation INTEGER NOT NULL, part INTEGER NOT NULL, parts INTEGER NOT NULL, "
        f"position {bigint} NOT NULL, target {bigint}, events {bigint}, applied {bigint} NOT NULL DEFAULT 0, "
        "PRIMARY KEY (name, generation, part))"
    )
    # Shares recorded before they were balanced: no target (they were dealt by the last byte of the id).
    db.add_missing_columns(
        cursor, SHARES_TABLE, {"target": bigint, "events": bigint, "applied": f"{bigint} NOT NULL DEFAULT 0"}
    )
    # part first: a share's process looks up its own aggregates with every batch it reads.
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {SHARE_AGGREGATES_TABLE} ("
        f"name TEXT NOT NULL, generation INTEGER NOT NULL, part INTEGER NOT NULL, aggregate_id {_uuid(db)} NOT NULL, "
        "PRIMARY KEY (name, generation, part, aggregate_id))"
    )


@dataclass(frozen=True)
class ShareProgress:
    """One share of a generation being filled in parallel: where it is, and how much of its work is done."""

    part: int
    parts: int
    position: int  # every event of the share's aggregates up to here is applied
    target: int | None  # where the share stops (None: recorded before shares were balanced, dealt by last byte)
    events: int | None  # the share's events from where it started to `target` (None: not counted)
    applied: int = 0  # how many of them it has applied

    @property
    def percent(self) -> float | None:
        """How much of the share's events are applied (None: not counted)."""
        if self.events is None:
            return None
        return 100.0 if self.events <= 0 else 100.0 * min(self.applied, self.events) / self.events


def share_positions(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> dict[tuple[int, int], int]:
    """(part, parts) -> position of each share of a generation being filled in parallel (empty if none)."""
    return {(share.part, share.parts): share.position for share in shares(db, cursor, name, generation)}


def shares(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> list[ShareProgress]:
    """The shares of a generation being filled in parallel, by part (empty if none)."""
    return all_shares(db, cursor, (name, generation)).get((name, generation), [])


def all_shares(
    db: ReadDatabase, cursor: Cursor, key: tuple[str, int] | None = None
) -> dict[tuple[str, int], list[ShareProgress]]:
    """(name, generation) -> its shares by part, of every generation being filled in parallel (or of `key`'s)."""
    where, params = ("WHERE name = %s AND generation = %s", key) if key else ("", ())
    cursor.execute(
        db.sql(
            f"SELECT name, generation, part, parts, position, target, events, applied FROM {SHARES_TABLE}"
            f" {where} ORDER BY name, generation, part"
        ),
        params,
    )
    found: dict[tuple[str, int], list[ShareProgress]] = {}
    for name, generation, part, parts, position, target, events, applied in cursor.fetchall():
        found.setdefault((name, int(generation)), []).append(
            ShareProgress(part, parts, int(position), _int(target), _int(events), int(applied or 0))
        )
    return found


def insert_shares(db: ReadDatabase, cursor: Cursor, name: str, generation: int, rows: Sequence[ShareProgress]) -> None:
    cursor.executemany(
        db.sql(
            f"INSERT INTO {SHARES_TABLE} (name, generation, part, parts, position, target, events, applied)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ),
        [(name, generation, s.part, s.parts, s.position, s.target, s.events, s.applied) for s in rows],
    )


def insert_share_aggregates(
    db: ReadDatabase, cursor: Cursor, name: str, generation: int, dealt: Mapping[UUID, int]
) -> None:
    """Record which share each aggregate was dealt to (aggregate id -> part), for the fill's processes and resumes."""
    rows = [(name, generation, part, aggregate.hex if db.is_sqlite else aggregate) for aggregate, part in dealt.items()]
    db.copy_rows(cursor, SHARE_AGGREGATES_TABLE, ("name", "generation", "part", "aggregate_id"), rows)


def share_aggregates(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> dict[UUID, int]:
    """aggregate id -> part, as dealt for a generation being filled in parallel (empty if none or unbalanced)."""
    cursor.execute(
        db.sql(f"SELECT aggregate_id, part FROM {SHARE_AGGREGATES_TABLE} WHERE name = %s AND generation = %s"),
        (name, generation),
    )
    return {
        aggregate if isinstance(aggregate, UUID) else UUID(aggregate): part for aggregate, part in cursor.fetchall()
    }


def lock_share(db: ReadDatabase, cursor: Cursor, name: str, generation: int, part: int) -> int:
    """The share's position, locked until the transaction ends."""
    lock = "" if db.is_sqlite else " FOR UPDATE"
    cursor.execute(
        db.sql(f"SELECT position FROM {SHARES_TABLE} WHERE name = %s AND generation = %s AND part = %s{lock}"),
        (name, generation, part),
    )
    return int(cursor.fetchone()[0])


def set_share_position(
    db: ReadDatabase, cursor: Cursor, name: str, generation: int, part: int, position: int, applied: int = 0
) -> None:
    """Move the share to `position`, having applied `applied` more of its events."""
    cursor.execute(
        db.sql(
            f"UPDATE {SHARES_TABLE} SET position = %s, applied = applied + %s"
            " WHERE name = %s AND generation = %s AND part = %s"
        ),
        (position, applied, name, generation, part),
    )


def delete_shares(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> None:
    for table in (SHARES_TABLE, SHARE_AGGREGATES_TABLE):
        cursor.execute(db.sql(f"DELETE FROM {table} WHERE name = %s AND generation = %s"), (name, generation))


def lock_generation(db: ReadDatabase, cursor: Cursor, name: str, state: str) -> Generation | None:
    """The projection's row in `state`, locked until the transaction ends."""
    lock = "" if db.is_sqlite else " FOR UPDATE"
    cursor.execute(db.sql(f"{_SELECT} WHERE name = %s AND state = %s{lock}"), (name, state))
    row = cursor.fetchone()
    return None if row is None else _generation(db, row)


def lock_active(db: ReadDatabase, cursor: Cursor, names: Sequence[str]) -> dict[str, Generation]:
    """name -> the active generation of each of `names`, all locked (in name order) by one statement."""
    lock = "" if db.is_sqlite else " ORDER BY name FOR UPDATE"
    marks = ", ".join(["%s"] * len(names))
    cursor.execute(db.sql(f"{_SELECT} WHERE state = %s AND name IN ({marks}){lock}"), (ACTIVE, *names))
    return {generation.name: generation for generation in (_generation(db, row) for row in cursor.fetchall())}


def all_generations(db: ReadDatabase, cursor: Cursor) -> list[Generation]:
    cursor.execute(f"{_SELECT} ORDER BY name, generation")
    return [_generation(db, row) for row in cursor.fetchall()]


def active_generations(db: ReadDatabase, cursor: Cursor) -> dict[str, int]:
    """name -> active generation. Unlocked: a rebuild keeps retired tables for a grace period,
    so a reader that just saw the old generation can still finish with it."""
    cursor.execute(db.sql(f"SELECT name, generation FROM {TABLE} WHERE state = %s"), (ACTIVE,))
    return {name: generation for name, generation in cursor.fetchall()}


def insert_generation(
    db: ReadDatabase, cursor: Cursor, name: str, generation: int, state: str, fingerprints: tuple[str, str]
) -> None:
    """A new generation, built with the definition of `fingerprints` (definition, columns)."""
    cursor.execute(
        db.sql(
            f"INSERT INTO {TABLE} (name, generation, state, position, updated_at, fingerprint, columns_fingerprint)"
            " VALUES (%s, %s, %s, 0, %s, %s, %s)"
        ),
        (name, generation, state, db.to_db_time(_now()), *fingerprints),
    )


def fill_missing_fingerprints(db: ReadDatabase, cursor: Cursor, name: str, fingerprints: tuple[str, str]) -> None:
    """Generations recorded before fingerprints existed were built by the code before this one: take them as
    built with today's definition (the release that adds fingerprints changes no read model)."""
    cursor.execute(
        db.sql(f"UPDATE {TABLE} SET fingerprint = %s, columns_fingerprint = %s WHERE name = %s AND fingerprint IS NULL"),
        (*fingerprints, name),
    )


def set_position(db: ReadDatabase, cursor: Cursor, name: str, generation: int, position: int) -> None:
    cursor.execute(
        db.sql(f"UPDATE {TABLE} SET position = %s, updated_at = %s WHERE name = %s AND generation = %s"),
        (position, db.to_db_time(_now()), name, generation),
    )


def set_positions(db: ReadDatabase, cursor: Cursor, generations: Sequence[Generation], position: int) -> None:
    """Move these generations to `position` (one statement), clearing the errors of those that had one."""
    keys = [value for g in generations for value in (g.name, g.generation)]
    where = " OR ".join(["(name = %s AND generation = %s)"] * len(generations))
    cursor.execute(
        db.sql(
            f"UPDATE {TABLE} SET position = %s, updated_at = %s, error = NULL, error_position = NULL WHERE {where}"
        ),
        (position, db.to_db_time(_now()), *keys),
    )


def set_state(db: ReadDatabase, cursor: Cursor, name: str, generation: int, state: str) -> None:
    cursor.execute(
        db.sql(f"UPDATE {TABLE} SET state = %s, updated_at = %s WHERE name = %s AND generation = %s"),
        (state, db.to_db_time(_now()), name, generation),
    )


def record_error(db: ReadDatabase, cursor: Cursor, name: str, generation: int, position: int, error: str) -> None:
    cursor.execute(
        db.sql(
            f"UPDATE {TABLE} SET error = %s, error_position = %s, updated_at = %s WHERE name = %s AND generation = %s"
        ),
        (error, position, db.to_db_time(_now()), name, generation),
    )


def delete_generation(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> None:
    cursor.execute(db.sql(f"DELETE FROM {TABLE} WHERE name = %s AND generation = %s"), (name, generation))


_SELECT = (
    "SELECT name, generation, state, position, error, error_position, updated_at, fingerprint, columns_fingerprint"
    f" FROM {TABLE}"
)


def _generation(db: ReadDatabase, row: tuple) -> Generation:  # type: ignore[type-arg]
    name, generation, state, position, error, error_position, updated_at, fingerprint, columns = row
    return Generation(
        name, generation, state, int(position), error, error_position, db.from_db_time(updated_at), fingerprint, columns
    )


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _uuid(db: ReadDatabase) -> str:
    """The column type of an aggregate id, as the event store writes it (SQLite: 32 hex digits)."""
    return "TEXT" if db.is_sqlite else "uuid"


def _now() -> datetime:
    return datetime.now(UTC)
