"""The mailer's own tables: one delivery per invitation token, and how far it has read.

These are operational state, not a read model: never rebuilt from events (a
rebuild would send every e-mail again). A delivery is `queued` (with a
`last_error` once an attempt failed and another is scheduled: retrying),
`sending` under a lease, or done: `sent`, `failed` (for good, with the reason)
or `skipped` (its token needs no e-mail any more).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from projections.engine.sql import Cursor, ReadDatabase

QUEUED, SENDING, SENT, FAILED, SKIPPED = "queued", "sending", "sent", "failed", "skipped"
MAX_DUE_AGE = timedelta(minutes=5)  # a delivery due but unsent for longer makes mail "degraded"
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


@dataclass(frozen=True)
class MailHealth:
    """How invitation e-mail is doing.

    "degraded" while a delivery is retrying, one due has waited more than MAX_DUE_AGE, or the last
    hour saw failures and no success (one bounced address alone is the invitation's news, not the service's).
    """

    status: str  # "ok" or "degraded"
    retrying: int  # not yet delivered after a failed attempt (another is scheduled or under way)
    failed_last_hour: int  # refused for good, or impossible to compose, in the last hour
    sent_last_hour: int
    oldest_due_age_s: float | None  # seconds since the oldest due-but-unsent delivery was created; None if none
    last_error: str | None  # the latest failed attempt's error in the last hour


def create_tables(db: ReadDatabase, cursor: Cursor) -> None:
    """The tables and indexes, and columns added since (projections.engine.store.setup calls it under the schema lock)."""
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS mail_deliveries (delivery_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, "
        "invitation_id TEXT NOT NULL, token_nonce TEXT NOT NULL, recipient TEXT NOT NULL, inviter_email TEXT NOT NULL, "
        f"status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at {db.type('ts')} NOT NULL, "
        f"last_error TEXT, created_at {db.type('ts')} NOT NULL, sent_at {db.type('ts')}, "
        f"recorded INTEGER NOT NULL DEFAULT 0, last_attempt_at {db.type('ts')})"
    )
    # Rows made before the column existed: their past attempts are not dated.
    db.add_missing_columns(cursor, "mail_deliveries", {"last_attempt_at": db.type("ts")})
    cursor.execute("CREATE INDEX IF NOT EXISTS mail_deliveries_due ON mail_deliveries (status, next_attempt_at)")
    # The invitation queries look up an invitation's latest delivery; health counts recent failures.
    cursor.execute(
        "CREATE INDEX IF NOT EXISTS mail_deliveries_by_invitation ON mail_deliveries (invitation_id, created_at)"
    )
    cursor.execute("CREATE INDEX IF NOT EXISTS mail_deliveries_attempted ON mail_deliveries (status, last_attempt_at)")


def enqueue(db: ReadDatabase, cursor: Cursor, rows: list[tuple[Any, ...]], now: datetime) -> None:
    """New deliveries, in the caller's transaction (which also moves the mailer's event cursor).

    A row is (id, org, invitation, nonce, recipient, inviter, created_at): created_at is the time of the
    event that asked for the e-mail, so the invitation's current token's delivery is the one created at or
    after the invitation was (re-)sent.
    """
    if rows:
        cursor.executemany(
            db.sql(
                f"INSERT INTO mail_deliveries ({_COLUMNS}, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, NULL, %s)"
                " ON CONFLICT (delivery_id) DO NOTHING"
            ),
            [(*row[:6], QUEUED, db.to_db_time(now), db.to_db_time(row[6])) for row in rows],
        )
        # A resend replaces the token: the old one's e-mail, still waiting (perhaps retrying), is not sent any more.
        cursor.executemany(
            db.sql(
                "UPDATE mail_deliveries SET status = %s WHERE invitation_id = %s AND status = %s AND created_at < %s"
            ),
            [(SKIPPED, row[2], QUEUED, db.to_db_time(row[6])) for row in rows],
        )


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
    """sent, failed (for good, with the reason) or skipped (nothing more to send)."""
    moment = db.to_db_time(now)
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(
                "UPDATE mail_deliveries SET status = %s, sent_at = %s, last_error = %s, last_attempt_at = %s"
                " WHERE delivery_id = %s"
            ),
            (status, moment if status == SENT else None, error and error[:1000], moment, delivery.delivery_id),
        )


def retry_later(db: ReadDatabase, delivery: Delivery, now: datetime, at: datetime, error: str) -> None:
    """The attempt at `now` failed for a while: queued again for `at`, with the error kept (retrying)."""
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(
                "UPDATE mail_deliveries SET status = %s, next_attempt_at = %s, last_error = %s, last_attempt_at = %s"
                " WHERE delivery_id = %s"
            ),
            (QUEUED, db.to_db_time(at), error[:1000], db.to_db_time(now), delivery.delivery_id),
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


def mark_recorded(db: ReadDatabase, delivery_ids: Sequence[str]) -> None:
    marks = ", ".join(["%s"] * len(delivery_ids))
    with db.transaction() as cursor:
        cursor.execute(db.sql(f"UPDATE mail_deliveries SET recorded = 1 WHERE delivery_id IN ({marks})"), delivery_ids)


def counts(db: ReadDatabase) -> dict[str, int]:
    with db.snapshot() as cursor:
        cursor.execute("SELECT status, COUNT(*) FROM mail_deliveries GROUP BY status")
        return {status: int(count) for status, count in cursor.fetchall()}


def health(db: ReadDatabase, now: datetime) -> MailHealth:
    """Retrying, recently failed and overdue deliveries, from the indexed columns only."""
    hour_ago, moment = db.to_db_time(now - timedelta(hours=1)), db.to_db_time(now)
    with db.snapshot() as cursor:
        cursor.execute(
            db.sql("SELECT COUNT(*) FROM mail_deliveries WHERE status IN (%s, %s) AND last_error IS NOT NULL"),
            (QUEUED, SENDING),
        )
        retrying = int(cursor.fetchone()[0])
        failed, sent = _count_since(db, cursor, FAILED, hour_ago), _count_since(db, cursor, SENT, hour_ago)
        cursor.execute(
            db.sql("SELECT MIN(created_at) FROM mail_deliveries WHERE status IN (%s, %s) AND next_attempt_at <= %s"),
            (QUEUED, SENDING, moment),
        )
        oldest = db.from_db_time(cursor.fetchone()[0])
        cursor.execute(
            db.sql(
                "SELECT last_error FROM mail_deliveries WHERE status IN (%s, %s, %s) AND last_attempt_at >= %s"
                " AND last_error IS NOT NULL ORDER BY last_attempt_at DESC LIMIT 1"
            ),
            (QUEUED, SENDING, FAILED, hour_ago),
        )
        row = cursor.fetchone()
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else None
    degraded = retrying or (age is not None and age > MAX_DUE_AGE.total_seconds()) or (failed and not sent)
    status = "degraded" if degraded else "ok"
    return MailHealth(status, retrying, failed, sent, age, row[0] if row else None)


def _count_since(db: ReadDatabase, cursor: Cursor, status: str, since: Any) -> int:
    cursor.execute(
        db.sql("SELECT COUNT(*) FROM mail_deliveries WHERE status = %s AND last_attempt_at >= %s"), (status, since)
    )
    return int(cursor.fetchone()[0])


def _delivery(db: ReadDatabase, row: Any) -> Delivery:
    return Delivery(row[0], row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]), db.when(row[8]), row[9])
