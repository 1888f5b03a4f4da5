"""Sliding-window limits shared by every API process: one row per slot taken.

Operational state, not a read model: never rebuilt from events, kept across
rebuilds. A slot is reserved before the limited action and released if the
action is then refused, so concurrent requests can never take more than the
limit. Each reservation is one transaction, serialised per (bucket, subject):
SQLite's BEGIN IMMEDIATE serialises all writers; PostgreSQL takes a
transaction-scoped advisory lock on a hash of the bucket and subject.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import uuid4

from projections.engine.sql import Cursor, ReadDatabase

TABLE = "rate_limit_slots"
# Failed look-ups of invitation tokens and link codes, per client address: the accept pages (web.guesses) and
# the API's previews (api.ratelimit) count into this one bucket, so neither can be used to guess faster.
LOOKUP_FAILURES = "lookup-failures"


def address_subject(address: str | None) -> str:
    """The subject of a client address's slots (never equal to a user id's: those have no prefix)."""
    return f"address:{address or 'unknown'}"


@dataclass(frozen=True)
class Slot:
    """One reserved use of a limited action."""

    bucket: str
    subject: str
    slot_id: str
    taken_at: datetime


class LimitReachedError(Exception):
    """Every slot of the window is taken; one frees at `retry_at`."""

    def __init__(self, retry_at: datetime) -> None:
        super().__init__(f"limit reached until {retry_at.isoformat()}")
        self.retry_at = retry_at


def create_tables(db: ReadDatabase, cursor: Cursor) -> None:
    # The primary key serves every statement here: they all name one (bucket, subject).
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (bucket TEXT NOT NULL, subject TEXT NOT NULL,"
        f" taken_at {db.type('ts')} NOT NULL, slot_id TEXT NOT NULL, PRIMARY KEY (bucket, subject, taken_at, slot_id))"
    )


def reserve(db: ReadDatabase, bucket: str, subject: str, limit: int, window: timedelta, now: datetime) -> Slot:
    """Take a slot if fewer than `limit` were taken in the `window` before `now`; else LimitReachedError.

    Slots older than the window are deleted in the same transaction.
    """
    key = (bucket, subject)
    with db.transaction() as cursor:
        if not db.is_sqlite:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(bucket, subject),))
        cursor.execute(
            db.sql(f"DELETE FROM {TABLE} WHERE bucket = %s AND subject = %s AND taken_at <= %s"),
            (*key, db.to_db_time(now - window)),
        )
        # The limit-th newest slot, if there is one: the window is full, and that slot frees first. One row, not
        # the window's every slot (a generous limit made each request read and convert thousands).
        cursor.execute(
            db.sql(
                f"SELECT taken_at FROM {TABLE} WHERE bucket = %s AND subject = %s"
                " ORDER BY taken_at DESC LIMIT 1 OFFSET %s"
            ),
            (*key, limit - 1),
        )
        full = cursor.fetchone()
        if full is not None:
            raise LimitReachedError(db.when(full[0]) + window)
        slot = Slot(bucket, subject, uuid4().hex, now)
        cursor.execute(
            db.sql(f"INSERT INTO {TABLE} (bucket, subject, taken_at, slot_id) VALUES (%s, %s, %s, %s)"),
            (*key, db.to_db_time(now), slot.slot_id),
        )
    return slot


def release(db: ReadDatabase, slot: Slot) -> None:
    """Give a slot back (the action it was taken for did not happen)."""
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(f"DELETE FROM {TABLE} WHERE bucket = %s AND subject = %s AND taken_at = %s AND slot_id = %s"),
            (slot.bucket, slot.subject, db.to_db_time(slot.taken_at), slot.slot_id),
        )


def _lock_id(bucket: str, subject: str) -> int:
    """A signed 64-bit advisory-lock key for one (bucket, subject)."""
    digest = hashlib.blake2b(f"ratelimit\0{bucket}\0{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
