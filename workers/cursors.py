"""Event cursors: how far each background duty has read the event log.

Each duty (the mailer, the snapshot taker, later the webhook sender) reads the log after its
cursor, does its work, and moves the cursor, in one table keyed by the duty's name. Moving it
in the same transaction as the work's own writes makes that work exactly-once; `lock` lets
several processes share one cursor without doing the same events twice.

Operational state, never rebuilt from events: a rebuild of the read models leaves it alone.
"""

from __future__ import annotations

from projections.engine.sql import Cursor, ReadDatabase

TABLE = "event_cursors"
# Where each duty kept its position before the shared table existed: carried over once.
_FORMER_TABLES = {"mailer": "mail_position", "snapshots": "snapshot_position"}


def create_table(db: ReadDatabase, cursor: Cursor) -> None:
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, position {db.type('bigint')} NOT NULL)"
    )
    for name, former in _FORMER_TABLES.items():
        start = _former_position(db, cursor, former)
        cursor.execute(
            db.sql(f"INSERT INTO {TABLE} (name, position) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"),
            (name, start),
        )


def position(db: ReadDatabase, cursor: Cursor, name: str) -> int:
    """Where the duty `name` has read up to (0: nothing yet)."""
    cursor.execute(db.sql(f"SELECT position FROM {TABLE} WHERE name = %s"), (name,))
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def lock(db: ReadDatabase, cursor: Cursor, name: str) -> int:
    """The position, locked until the caller's transaction ends (SQLite's writes are serial anyway)."""
    lock_row = "" if db.is_sqlite else " FOR UPDATE"
    cursor.execute(db.sql(f"SELECT position FROM {TABLE} WHERE name = %s{lock_row}"), (name,))
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def advance(db: ReadDatabase, cursor: Cursor, name: str, to: int) -> None:
    """Move the cursor forward to `to`, in the caller's transaction; never backwards."""
    cursor.execute(
        db.sql(
            f"INSERT INTO {TABLE} (name, position) VALUES (%s, %s)"
            f" ON CONFLICT (name) DO UPDATE SET position = excluded.position WHERE {TABLE}.position < excluded.position"
        ),
        (name, to),
    )


def _former_position(db: ReadDatabase, cursor: Cursor, table: str) -> int:
    if not db.columns(cursor, table):
        return 0  # no such table: this database started with the shared one
    cursor.execute(f"SELECT position FROM {table} WHERE id = 1")
    row = cursor.fetchone()
    return int(row[0]) if row else 0
