"""What every projection is: events in, rows out, in tables of its own generation.

A projection owns a few tables. Each rebuild writes a new *generation* of
them (`members_g2`...) while readers keep using the active one; the switch is
one row update (see `projections.tracking`). Handlers only translate an event
into statements; they hold no rules and never read the write side.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatchmethod
from typing import Any, ClassVar

from projections.sql import Cursor, ReadDatabase


class Writer:
    """Runs a projection's statements inside the batch transaction."""

    def __init__(self, db: ReadDatabase, cursor: Cursor, tables: dict[str, str], position: int) -> None:
        self.db = db
        self.cursor = cursor
        self.tables = tables
        self.position = position  # notification id of the event being applied
        self._statements: dict[str, str] = {}

    def run(self, statement: str, *params: Any) -> None:
        self.cursor.execute(self._prepare(statement), params)

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self.cursor.executemany(self._prepare(statement), rows)

    def copy(self, logical_table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.db.copy_rows(self.cursor, self.tables[logical_table], columns, rows)

    def time(self, value: Any) -> Any:
        return self.db.to_db_time(value)

    def _prepare(self, statement: str) -> str:
        prepared = self._statements.get(statement)
        if prepared is None:
            prepared = self._statements[statement] = self.db.sql(statement.format(**self.tables))
        return prepared


class Projection:
    """Base class: `name`, table DDL, and one `apply` handler per event class it uses."""

    name: ClassVar[str]
    # logical table name -> column definitions; {ts}, {bigint}, {json} are portable types
    tables: ClassVar[dict[str, str]]
    # index definitions: (index suffix, logical table, columns)
    indexes: ClassVar[list[tuple[str, str, str]]] = []

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.table_names = {logical: f"{logical}_g{generation}" for logical in self.tables}
        self._handlers: dict[type, Any] = {}

    def handle(self, event: Any, w: Writer) -> None:
        """`apply`, with the handler for each event class looked up once (rebuilds call this a lot)."""
        handler = self._handlers.get(type(event))
        if handler is None:
            descriptor = next(vars(cls)["apply"] for cls in type(self).__mro__ if "apply" in vars(cls))
            handler = self._handlers[type(event)] = descriptor.dispatcher.dispatch(type(event))
        handler(self, event, w)

    def create_tables(self, db: ReadDatabase, cursor: Cursor) -> None:
        for logical, columns in self.tables.items():
            types = {"ts": db.type("ts"), "bigint": db.type("bigint"), "json": db.type("json")}
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {self.table_names[logical]} ({columns.format(**types)})")
        for suffix, logical, columns in self.indexes:
            table = self.table_names[logical]
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {table}_{suffix} ON {table} ({columns})")

    def drop_tables(self, cursor: Cursor) -> None:
        for table in self.table_names.values():
            cursor.execute(f"DROP TABLE IF EXISTS {table}")

    def writer(self, db: ReadDatabase, cursor: Cursor) -> Writer:
        return Writer(db, cursor, self.table_names, 0)

    def flush(self, w: Writer) -> None:
        """Write what `apply` buffered, at the end of a batch and in its transaction (default: nothing)."""

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        """Events this projection does not use change nothing (the position still advances)."""
