"""Telling a passing outage from a real error.

A database that restarts, is unreachable, shuts a session down, is busy, or
asks a transaction to be retried (serialization failure, deadlock) heals by
itself: background loops wait and retry, requests answer 503 with
Retry-After. A read model whose tables are missing is broken for everyone
alike (systemic). Anything else (bad data, a bug met by one event) is a real
error of that one item and must not be retried forever.
"""

from __future__ import annotations

import sqlite3

import psycopg
from eventsourcing import persistence
from psycopg.errors import InsufficientPrivilege, UndefinedColumn, UndefinedTable

SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o error")
SQLITE_SCHEMA = ("no such table", "no such column", "readonly database")


def is_transient(error: BaseException) -> bool:
    """True when `error`, or anything it was raised from, is an outage that passes by itself."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_itself(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_itself(error: BaseException) -> bool:
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return True  # connection failures, admin shutdown, serialization failures, deadlocks, pool timeouts
    if isinstance(error, persistence.OperationalError | persistence.InterfaceError):
        if isinstance(error.__cause__, sqlite3.Error):
            return _transient_itself(error.__cause__)  # "no such table" is a bug, "locked" passes
        return True  # the library's wrappers of the above, and its SQLite writer-lock timeout
    if isinstance(error, sqlite3.OperationalError):
        return any(word in str(error).lower() for word in SQLITE_TRANSIENT)
    return isinstance(error, ConnectionError | TimeoutError)


def is_systemic(error: BaseException) -> bool:
    """True when the read model itself is broken (a table or column missing, no privilege):
    every event would fail alike, so parking them one organization at a time would only
    spread the damage. The projection waits, retries, and reports the error instead."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UndefinedTable | UndefinedColumn | InsufficientPrivilege):
            return True
        if isinstance(current, sqlite3.OperationalError) and any(w in str(current).lower() for w in SQLITE_SCHEMA):
            return True
        current = current.__cause__ or current.__context__
    return False
