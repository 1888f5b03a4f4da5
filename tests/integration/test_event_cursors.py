"""The background duties' event cursors (`workers.cursors`) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from projections.engine.sql import ReadDatabase
from service.settings import Settings
from workers import cursors


@pytest.fixture
def db(store: str, settings_for: Callable[..., Settings]) -> Iterator[ReadDatabase]:
    opened = ReadDatabase(settings_for(store).database)
    yield opened
    opened.close()


def test_positions_kept_in_the_former_per_duty_tables_are_carried_over(db: ReadDatabase) -> None:
    with db.transaction() as cursor:  # as a deployment made before the shared table existed left them
        for table, position in (("mail_position", 41), ("snapshot_position", 7)):
            cursor.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, position {db.type('bigint')} NOT NULL)")
            cursor.execute(db.sql(f"INSERT INTO {table} VALUES (1, %s)"), (position,))
        cursors.create_table(db, cursor)
        cursors.create_table(db, cursor)  # again, as every start does: nothing changes
    with db.snapshot() as cursor:
        assert cursors.position(db, cursor, "mailer") == 41
        assert cursors.position(db, cursor, "snapshots") == 7


def test_a_cursor_starts_at_zero_and_only_moves_forward(db: ReadDatabase) -> None:
    with db.transaction() as cursor:
        cursors.create_table(db, cursor)
        assert cursors.position(db, cursor, "webhooks") == 0
        cursors.advance(db, cursor, "webhooks", 10)
        cursors.advance(db, cursor, "webhooks", 4)  # a slower process finishing late never moves it back
        assert cursors.lock(db, cursor, "webhooks") == 10
        assert cursors.position(db, cursor, "mailer") == 0  # each duty has its own
