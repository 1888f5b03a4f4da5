"""Idempotency keys: what a command request with an `Idempotency-Key` did, kept for a day.

Operational state of the HTTP layer (never rebuilt from events). One row per
key, scoped to organization and caller (`scope` is a hash of the three):

- `started`: a request with this key is running (`payload`: its receipt once its command is saved);
- `saved`: its command was saved, but it answered 5xx (or died): `payload` is the receipt;
- `done`: the answer was given (`payload` is the response, replayed to retries).

Payloads may hold an invite link's code and people's addresses, so they are stored encrypted (AES-GCM with
a key derived from MEMBERSHIP_SECRET_KEY, the row's scope as associated data: `seal`, `open_sealed`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from projections.engine.sql import Cursor, ReadDatabase

_RANDOM = random.Random()  # noqa: S311 -- its own generator, not the module's shared one (see membership.application)

TABLE = "idempotency_keys"
STARTED, SAVED, DONE = "started", "saved", "done"
PURGE_CHANCE = 0.01  # of claims that also delete every expired key (keeps the table at about a day's keys)


@dataclass(frozen=True)
class Record:
    scope: str
    fingerprint: str
    state: str
    payload: str | None
    created_at: datetime
    updated_at: datetime


def create_table(db: ReadDatabase, cursor: Cursor) -> None:
    ts = db.type("ts")
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (scope TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, state TEXT NOT NULL,"
        f" payload TEXT, created_at {ts} NOT NULL, updated_at {ts} NOT NULL)"
    )
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_by_age ON {TABLE} (created_at)")


def claim(
    db: ReadDatabase, scope: str, fingerprint: str, now: datetime, retention: timedelta, stale: timedelta
) -> Record | None:
    """Claim the key for a new request (None), or the record of an earlier request with it.

    A key older than `retention`, or `started` and untouched for `stale` (its request died before
    saving anything it could tell), is claimed afresh.
    """
    moment = db.to_db_time(now)
    with db.transaction() as cursor:
        if _RANDOM.random() < PURGE_CHANCE:  # noqa: S311 -- housekeeping, not security
            cursor.execute(db.sql(f"DELETE FROM {TABLE} WHERE created_at < %s"), (db.to_db_time(now - retention),))
        cursor.execute(
            db.sql(
                f"INSERT INTO {TABLE} (scope, fingerprint, state, payload, created_at, updated_at)"
                " VALUES (%s, %s, %s, NULL, %s, %s) ON CONFLICT (scope) DO NOTHING"
            ),
            (scope, fingerprint, STARTED, moment, moment),
        )
        if cursor.rowcount == 1:
            return None
        lock = "" if db.is_sqlite else " FOR UPDATE"
        cursor.execute(db.sql(f"{_SELECT} WHERE scope = %s{lock}"), (scope,))
        record = _record(db, cursor.fetchone())
        expired = record.created_at <= now - retention
        abandoned = record.state == STARTED and record.updated_at <= now - stale
        if abandoned and record.payload is not None and not expired:
            # It died after saving its command: a retry must pick the receipt up, not run it again.
            cursor.execute(db.sql(f"UPDATE {TABLE} SET state = %s WHERE scope = %s"), (SAVED, scope))
            return Record(scope, record.fingerprint, SAVED, record.payload, record.created_at, record.updated_at)
        if not (expired or abandoned):
            return record
        cursor.execute(
            db.sql(
                f"UPDATE {TABLE} SET fingerprint = %s, state = %s, payload = NULL, created_at = %s, updated_at = %s"
                " WHERE scope = %s"
            ),
            (fingerprint, STARTED, moment, moment, scope),
        )
    return None


def store(db: ReadDatabase, scope: str, state: str, payload: str, now: datetime) -> None:
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(f"UPDATE {TABLE} SET state = %s, payload = %s, updated_at = %s WHERE scope = %s"),
            (state, payload, db.to_db_time(now), scope),
        )


def forget(db: ReadDatabase, scope: str) -> None:
    """The request changed nothing: a retry with the key runs afresh."""
    with db.transaction() as cursor:
        cursor.execute(db.sql(f"DELETE FROM {TABLE} WHERE scope = %s AND state = %s"), (scope, STARTED))


_SELECT = f"SELECT scope, fingerprint, state, payload, created_at, updated_at FROM {TABLE}"


def _record(db: ReadDatabase, row: Any) -> Record:
    scope, fingerprint, state, payload, created_at, updated_at = row
    return Record(scope, fingerprint, state, payload, db.when(created_at), db.when(updated_at))


def seal(secret_key: bytes, scope: str, payload: dict[str, Any]) -> str:
    nonce = os.urandom(12)
    sealed = _cipher(secret_key).encrypt(nonce, json.dumps(payload).encode(), scope.encode())
    return base64.b64encode(nonce + sealed).decode()


def open_sealed(secret_key: bytes, scope: str, payload: str) -> dict[str, Any]:
    raw = base64.b64decode(payload)
    opened: dict[str, Any] = json.loads(_cipher(secret_key).decrypt(raw[:12], raw[12:], scope.encode()))
    return opened


def _cipher(secret_key: bytes) -> AESGCM:
    return AESGCM(hmac.new(secret_key, b"idempotency-keys", hashlib.sha256).digest())


def delete_naming(db: ReadDatabase, secret_key: bytes, texts: Sequence[str]) -> int:
    """Delete the keys whose kept answer or receipt names any of `texts` (an erased person); a retry with
    one of them then runs afresh. Reads every key kept (about a day's), opening each."""
    # A whole JSON string value, quotes included, in the kept answer (itself JSON, so escaped twice): a short
    # name must not match inside other words.
    wanted = [json.dumps(json.dumps(text, ensure_ascii=False), ensure_ascii=False)[1:-1].lower() for text in texts if text]
    with db.transaction() as cursor:
        cursor.execute(f"SELECT scope, payload FROM {TABLE} WHERE payload IS NOT NULL")  # noqa: S608
        naming = [
            scope
            for scope, payload in cursor.fetchall()
            if any(text in json.dumps(open_sealed(secret_key, scope, payload), ensure_ascii=False).lower() for text in wanted)
        ]
        cursor.executemany(db.sql(f"DELETE FROM {TABLE} WHERE scope = %s"), [(scope,) for scope in naming])  # noqa: S608
    return len(naming)
