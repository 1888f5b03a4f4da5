"""The mailer's own tables: one delivery per invitation token, and how far it has read.

These are operational state, not a read model: never rebuilt from events (a
rebuild would send every e-mail again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from projections.sql import Cursor, ReadDatabase

QUEUED, SENDING, SENT, FAILED, SKIPPED = "queued", "sending", "sent", "failed", "skipped"
_COLUMNS = (
    "delivery_id, organization_id, invitation_id, token_nonce, recipient, inviter_email, status, attempts, "
    "next_attempt_at, last_error"
)


@dataclass(frozen=True)
class Delivery:
    delivery_id: str  # also the Message-ID: stable for a token, so a re-send is recognisably the same message
    organization_id: str
    invitation_id: str
    token_nonce: str
    recipient: str
    inviter_email: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


def create_tables(db: ReadDatabase, cursor: Cursor) -> None:
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS mail_deliveries (delivery_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, "
        "invitation_id TEXT NOT NULL, token_nonce TEXT NOT NULL, recipient TEXT NOT NULL, inviter_email TEXT NOT NULL, "
        f"status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at {db.type('ts')} NOT NULL, "
        f"last_error TEXT, created_at {db.type('ts')} NOT NULL, sent_at {db.type('ts')}, "
        "recorded INTEGER NOT NULL DEFAULT 0)"
    )
    cursor.execute("CREATE INDEX IF NOT EXISTS mail_deliveries_due ON mail_deliveries (status, next_attempt_at)")
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS mail_position (id INTEGER PRIMARY KEY, position {db.type('bigint')} NOT NULL)"
    )
    cursor.execute(
        db.sql("INSERT INTO mail_position (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"),
    )


def position(db: ReadDatabase, cursor: Cursor) -> int:
    cursor.execute("SELECT position FROM mail_position WHERE id = 1")
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def lock_position(db: ReadDatabase, cursor: Cursor) -> int:
    cursor.execute("SELECT position FROM mail_position WHERE id = 1" + ("" if db.is_sqlite else " FOR UPDATE"))
    return int(cursor.fetchone()[0])


def enqueue(db: ReadDatabase, cursor: Cursor, rows: list[tuple[Any, ...]], new_position: int, now: datetime) -> None:
    """New deliveries (id, org, invitation, nonce, recipient, inviter) and the position, in the caller's transaction."""
    if rows:
        cursor.executemany(
            db.sql(
                f"INSERT INTO mail_deliveries ({_COLUMNS}, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, NULL, %s)"
                " ON CONFLICT (delivery_id) DO NOTHING"
            ),
            [(*row, QUEUED, db.to_db_time(now), db.to_db_time(now)) for row in rows],
        )
    cursor.execute(db.sql("UPDATE mail_position SET position = %s WHERE id = 1"), (new_position,))


def claim_due(db: ReadDatabase, now: datetime, lease: timedelta, limit: int) -> list[Delivery]:
    """Deliveries due now (or whose sender died mid-send), marked `sending` under a lease."""
    lock = "" if db.is_sqlite else " FOR UPDATE SKIP LOCKED"
    moment = db.to_db_time(now)
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(
                f"SELECT {_COLUMNS} FROM mail_deliveries WHERE status IN (%s, %s) AND next_attempt_at <= %s"
                f" ORDER BY next_attempt_at LIMIT %s{lock}"
            ),
            (QUEUED, SENDING, moment, limit),
        )
        rows = cursor.fetchall()
        cursor.executemany(
            db.sql(
                "UPDATE mail_deliveries SET status = %s, attempts = attempts + 1, next_attempt_at = %s WHERE delivery_id = %s"
            ),
            [(SENDING, db.to_db_time(now + lease), row[0]) for row in rows],
        )
    return [_delivery(db, row) for row in rows]


def finish(db: ReadDatabase, delivery: Delivery, status: str, now: datetime, error: str | None = None) -> None:
    """sent, failed (for good) or skipped (nothing more to send)."""
    with db.transaction() as cursor:
        cursor.execute(
            db.sql("UPDATE mail_deliveries SET status = %s, sent_at = %s, last_error = %s WHERE delivery_id = %s"),
            (status, db.to_db_time(now) if status == SENT else None, error, delivery.delivery_id),
        )


def retry_later(db: ReadDatabase, delivery: Delivery, at: datetime, error: str) -> None:
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(
                "UPDATE mail_deliveries SET status = %s, next_attempt_at = %s, last_error = %s WHERE delivery_id = %s"
            ),
            (QUEUED, db.to_db_time(at), error[:1000], delivery.delivery_id),
        )


def unrecorded(db: ReadDatabase, limit: int = 100) -> list[tuple[Delivery, str]]:
    """Sent or failed deliveries whose outcome is not yet an event."""
    with db.snapshot() as cursor:
        cursor.execute(
            db.sql(f"SELECT {_COLUMNS} FROM mail_deliveries WHERE status IN (%s, %s) AND recorded = 0 LIMIT %s"),
            (SENT, FAILED, limit),
        )
        rows = cursor.fetchall()
    return [(_delivery(db, row), row[6]) for row in rows]


def mark_recorded(db: ReadDatabase, delivery_id: str) -> None:
    with db.transaction() as cursor:
        cursor.execute(db.sql("UPDATE mail_deliveries SET recorded = 1 WHERE delivery_id = %s"), (delivery_id,))


def counts(db: ReadDatabase) -> dict[str, int]:
    with db.snapshot() as cursor:
        cursor.execute("SELECT status, COUNT(*) FROM mail_deliveries GROUP BY status")
        return {status: int(count) for status, count in cursor.fetchall()}


def _delivery(db: ReadDatabase, row: Any) -> Delivery:
    return Delivery(row[0], row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]), db.when(row[8]), row[9])
