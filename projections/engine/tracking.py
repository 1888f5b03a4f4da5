"""Where each projection is: its generations, their positions, and failures.

One row per (projection, generation). Exactly one generation per projection is
`active` (what readers read and the runner keeps current); a rebuild adds a
`building` one, makes it active and the old one `retired` in one transaction
when it has caught up, and drops the retired tables after a grace period.
Positions are written in the same transaction as the rows they cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from projections.engine.sql import Cursor, ReadDatabase

TABLE = "projection_generations"
# A building generation filled by several processes: each share's own position (see projections.engine.parallel).
SHARES_TABLE = "projection_shares"
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
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {SHARES_TABLE} ("
        "name TEXT NOT NULL, generation INTEGER NOT NULL, part INTEGER NOT NULL, parts INTEGER NOT NULL, "
        f"position {db.type('bigint')} NOT NULL, PRIMARY KEY (name, generation, part))"
    )


def share_positions(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> dict[tuple[int, int], int]:
    """(part, parts) -> position of each share of a generation being filled in parallel (empty if none)."""
    cursor.execute(
        db.sql(f"SELECT part, parts, position FROM {SHARES_TABLE} WHERE name = %s AND generation = %s"),
        (name, generation),
    )
    return {(part, parts): int(position) for part, parts, position in cursor.fetchall()}


def insert_shares(db: ReadDatabase, cursor: Cursor, name: str, generation: int, parts: int, position: int) -> None:
    cursor.executemany(
        db.sql(f"INSERT INTO {SHARES_TABLE} (name, generation, part, parts, position) VALUES (%s, %s, %s, %s, %s)"),
        [(name, generation, part, parts, position) for part in range(parts)],
    )


def lock_share(db: ReadDatabase, cursor: Cursor, name: str, generation: int, part: int) -> int:
    """The share's position, locked until the transaction ends."""
    lock = "" if db.is_sqlite else " FOR UPDATE"
    cursor.execute(
        db.sql(f"SELECT position FROM {SHARES_TABLE} WHERE name = %s AND generation = %s AND part = %s{lock}"),
        (name, generation, part),
    )
    return int(cursor.fetchone()[0])


def set_share_position(db: ReadDatabase, cursor: Cursor, name: str, generation: int, part: int, position: int) -> None:
    cursor.execute(
        db.sql(f"UPDATE {SHARES_TABLE} SET position = %s WHERE name = %s AND generation = %s AND part = %s"),
        (position, name, generation, part),
    )


def delete_shares(db: ReadDatabase, cursor: Cursor, name: str, generation: int) -> None:
    cursor.execute(db.sql(f"DELETE FROM {SHARES_TABLE} WHERE name = %s AND generation = %s"), (name, generation))


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


def _now() -> datetime:
    return datetime.now(UTC)
