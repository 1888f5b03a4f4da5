"""Reading the event log in batches, for the projections.

On PostgreSQL the read goes straight to the application's events table (the
library's own `select_notifications` builds a dict per row first), and can be
limited to one *share* of the aggregates, so that several processes can
rebuild in parallel, each applying the events of its own organizations. The
shares are dealt by how many events each aggregate has (`count_by_aggregate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.rows import tuple_row

from membership import Organizations
from projections.engine import tracking


@dataclass(frozen=True)
class Share:
    """The aggregates dealt to `part` of `parts` (every event of an aggregate: one share).

    The deal is recorded in `tracking.SHARE_AGGREGATES_TABLE` under the generation (`name`, `generation`).
    """

    part: int
    parts: int
    name: str
    generation: int


def read_batch(organizations: Organizations, after: int, limit: int) -> Sequence[Notification]:
    """Up to `limit` notifications after position `after`, in order."""
    recorder = organizations.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        return recorder.select_notifications(start=after + 1, limit=limit)
    return _select(recorder, "notification_id > %s ORDER BY notification_id LIMIT %s", [after, limit])


def read_aggregate(organizations: Organizations, aggregate_id: UUID, after: int, upto: int) -> list[Notification]:
    """One aggregate's notifications in positions (after, upto], in order (to retry what was parked)."""
    recorder = organizations.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        condition = "originator_id = %s AND notification_id > %s AND notification_id <= %s ORDER BY notification_id"
        return _select(recorder, condition, [aggregate_id, after, upto])
    assert isinstance(recorder, SQLiteApplicationRecorder)
    statement = (
        "SELECT rowid, originator_id, originator_version, topic, state"
        f" FROM {recorder.events_table_name} WHERE originator_id = ? AND rowid > ? AND rowid <= ? ORDER BY rowid"
    )
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, (aggregate_id.hex, after, upto))
        return [
            Notification(id=row[0], originator_id=UUID(row[1]), originator_version=row[2], topic=row[3], state=row[4])
            for row in cursor.fetchall()
        ]


def read_share(organizations: Organizations, after: int, upto: int, share: Share) -> Sequence[Notification]:
    """The share's notifications in positions (after, upto], in order (PostgreSQL only).

    A position range rather than a LIMIT: with the share filter, PostgreSQL would
    otherwise plan a full scan and sort for every batch.
    """
    recorder = organizations.recorder
    assert isinstance(recorder, PostgresApplicationRecorder), "shares need PostgreSQL"
    # The read models live in the event store's schema (see projections.engine.sql.ReadDatabase).
    dealt = f"{recorder.datastore.schema}.{tracking.SHARE_AGGREGATES_TABLE}"
    condition = (
        "notification_id > %s AND notification_id <= %s AND originator_id IN"
        f" (SELECT aggregate_id FROM {dealt} WHERE name = %s AND generation = %s AND part = %s)"
        " ORDER BY notification_id"
    )
    return _select(recorder, condition, [after, upto, share.name, share.generation, share.part])


def count_by_aggregate(organizations: Organizations, after: int, upto: int) -> dict[UUID, int]:
    """Aggregate id -> how many of its events are in positions (after, upto]: one GROUP BY, on either store."""
    recorder = organizations.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        statement = (
            "SELECT originator_id, COUNT(*)"
            f" FROM {recorder.datastore.schema}.{recorder.events_table_name}"
            " WHERE notification_id > %s AND notification_id <= %s GROUP BY originator_id"
        )
        with recorder.datastore.get_connection() as connection, connection.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(statement, [after, upto])
            rows = cursor.fetchall()
    else:
        assert isinstance(recorder, SQLiteApplicationRecorder)
        statement = (
            f"SELECT originator_id, COUNT(*) FROM {recorder.events_table_name}"
            " WHERE rowid > ? AND rowid <= ? GROUP BY originator_id"
        )
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, (after, upto))
            rows = cursor.fetchall()
    return {_uuid(originator): int(count) for originator, count in rows}


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)  # SQLite keeps 32 hex digits


def _select(recorder: PostgresApplicationRecorder, condition: str, params: list[Any]) -> list[Notification]:
    statement = (
        "SELECT notification_id, originator_id, originator_version, topic, state"
        f" FROM {recorder.datastore.schema}.{recorder.events_table_name} WHERE {condition}"
    )
    with recorder.datastore.get_connection() as connection, connection.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(statement, params, prepare=True)
        return [
            Notification(id=id_, originator_id=originator, originator_version=version, topic=topic, state=bytes(state))
            for id_, originator, version, topic, state in cursor.fetchall()
        ]
