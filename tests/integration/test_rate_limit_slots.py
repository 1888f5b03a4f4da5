"""The rate limiter's slots (`projections.ratelimit_slots`) on SQLite and PostgreSQL.

Reservations race from threads over two connections pools (like two API
processes on one database); the limit must hold exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from projections import ratelimit_slots
from projections.engine import store as read_models
from projections.engine.sql import ReadDatabase
from projections.ratelimit_slots import LimitReachedError, Slot
from service.bootstrap import OPERATIONAL_TABLES
from service.settings import Settings

HOUR = timedelta(hours=1)
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def databases(store: str, settings_for: Callable[..., Settings]) -> Iterator[list[ReadDatabase]]:
    """Two independent connection pools on one store, its tables set up."""
    opened = [ReadDatabase(settings_for(store).database) for _ in range(2)]
    read_models.setup(opened[0], *OPERATIONAL_TABLES)
    yield opened
    for db in opened:
        db.close()


def reserve(db: ReadDatabase, at: datetime, subject: str = "alice", limit: int = 3, bucket: str = "b") -> Slot:
    return ratelimit_slots.reserve(db, bucket, subject, limit, HOUR, at)


def stored(db: ReadDatabase) -> int:
    with db.snapshot() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {ratelimit_slots.TABLE}")
        return int(cursor.fetchone()[0])


def test_at_most_the_limit_in_the_window_then_when_the_oldest_frees(databases: list[ReadDatabase]) -> None:
    db = databases[0]
    for minutes in (0, 10, 20):
        reserve(db, T0 + timedelta(minutes=minutes))

    with pytest.raises(LimitReachedError) as refused:
        reserve(db, T0 + timedelta(minutes=30))

    assert refused.value.retry_at == T0 + HOUR
    assert reserve(db, T0 + HOUR).taken_at == T0 + HOUR  # the first slot has just expired
    with pytest.raises(LimitReachedError):
        reserve(db, T0 + HOUR + timedelta(minutes=5))


def test_a_released_slot_can_be_taken_again(databases: list[ReadDatabase]) -> None:
    db = databases[0]
    slots = [reserve(db, T0 + timedelta(seconds=s)) for s in range(3)]

    ratelimit_slots.release(db, slots[1])

    assert reserve(db, T0 + timedelta(seconds=5)).taken_at == T0 + timedelta(seconds=5)
    with pytest.raises(LimitReachedError) as refused:
        reserve(db, T0 + timedelta(seconds=6))
    assert refused.value.retry_at == T0 + HOUR


def test_subjects_and_buckets_are_counted_apart(databases: list[ReadDatabase]) -> None:
    db = databases[0]
    for _ in range(3):
        reserve(db, T0)

    reserve(db, T0, subject="bob")
    reserve(db, T0, bucket="other")
    with pytest.raises(LimitReachedError):
        reserve(db, T0)


def test_a_reservation_prunes_the_subjects_expired_slots(databases: list[ReadDatabase]) -> None:
    db = databases[0]
    for seconds in range(3):
        reserve(db, T0 + timedelta(seconds=seconds))
    reserve(db, T0, subject="bob")

    reserve(db, T0 + 2 * HOUR)

    assert stored(db) == 2  # alice's new slot and bob's; alice's three old ones are gone


def test_a_lowered_limit_waits_for_enough_slots_to_expire(databases: list[ReadDatabase]) -> None:
    db = databases[0]
    for minutes in range(5):
        reserve(db, T0 + timedelta(minutes=minutes), limit=5)

    with pytest.raises(LimitReachedError) as refused:
        reserve(db, T0 + timedelta(minutes=10), limit=2)

    assert refused.value.retry_at == T0 + HOUR + timedelta(minutes=3)  # then only the newest is left


def test_racing_reservations_over_two_pools_never_exceed_the_limit(databases: list[ReadDatabase]) -> None:
    callers = 24
    barrier = threading.Barrier(callers)

    def attempt(i: int) -> bool:
        barrier.wait()
        try:
            reserve(databases[i % 2], T0 + timedelta(milliseconds=i), limit=10)
        except LimitReachedError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=callers) as pool:
        results = list(pool.map(attempt, range(callers)))

    assert results.count(True) == 10
    assert stored(databases[0]) == 10
