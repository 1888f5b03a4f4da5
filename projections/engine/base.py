"""What every projection is: events in, rows out, in tables of its own generation.

A projection owns a few tables. Each rebuild writes a new *generation* of
them (`members_g2`...) while readers keep using the active one; the switch is
one row update (see `projections.engine.tracking`). Handlers only translate an event
into statements; they hold no rules and never read the write side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import singledispatchmethod
from typing import Any, ClassVar

from projections.engine.changes import TableChanges, column_types
from projections.engine.decoding import UndecodableEvent
from projections.engine.sql import POSTGRES_TYPES, Cursor, ReadDatabase


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
    # index definitions: (index suffix, logical table, columns), the columns perhaps followed by " WHERE ..."
    # (a partial index)
    indexes: ClassVar[list[tuple[str, str, str]]] = []
    # suffixes of the indexes the handlers' own statements look rows up by: a rebuild makes them with the
    # tables (every other index once they are filled), or each lookup would read the whole table
    write_indexes: ClassVar[frozenset[str]] = frozenset()
    # PostgreSQL only, each where its extension ("" for none) is installed (ReadDatabase.extensions): (index
    # suffix, logical table, extension, what follows USING), where {schema} stands for the extension's schema
    postgres_indexes: ClassVar[list[tuple[str, str, str, str]]] = []
    batched: ClassVar[dict[str, str]] = {}
    # Raise it when the handlers change what they write (the tables and indexes are fingerprinted anyway):
    # the service then rebuilds this read model by itself (see `projections.engine.definitions`).
    version: ClassVar[int] = 1

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.table_names = self.table_names_in(generation)
        self._handlers: dict[type, Any] = {}
        self.changes: dict[str, TableChanges] = {}
        for logical, key in self.batched.items():
            types = column_types(self.tables[logical].format(**POSTGRES_TYPES))
            self.changes[logical] = TableChanges(logical, key, types)

    @classmethod
    def fingerprint(cls) -> str:
        """Changes whenever the definition does: tables, indexes or `version`."""
        definition: dict[str, Any] = {"tables": cls.tables, "indexes": cls.indexes, "version": cls.version}
        if cls.postgres_indexes:  # only then: the others' fingerprints stay what they were
            definition["postgres_indexes"] = cls.postgres_indexes
        return _digest(definition)

    @classmethod
    def columns_fingerprint(cls) -> str:
        """Changes only when the tables' columns do: old tables then no longer fit the code."""
        return _digest(cls.tables)

    @classmethod
    def table_names_in(cls, generation: int) -> dict[str, str]:
        """Logical table name -> the generation's table (readers need no projection instance)."""
        return {logical: f"{logical}_g{generation}" for logical in cls.tables}

    # False when the catch-all `apply` does something (the audit records every event)
    ignores_unregistered_events: ClassVar[bool] = True

    def handler_for(self, event_class: type) -> Any:
        """The `apply` function for this class of event, or None if it changes nothing; looked up once per class."""
        try:
            return self._handlers[event_class]
        except KeyError:
            descriptor = next(vars(cls)["apply"] for cls in type(self).__mro__ if "apply" in vars(cls))
            handler = descriptor.dispatcher.dispatch(event_class)
            if event_class is UndecodableEvent:
                handler = _fail_undecodable  # nobody may skip it silently: it may be one they use
            elif self.ignores_unregistered_events and handler is descriptor.dispatcher.dispatch(object):
                handler = None
            self._handlers[event_class] = handler
            return handler

    def create_tables(self, db: ReadDatabase, cursor: Cursor, with_indexes: bool = True) -> None:
        """The generation's tables; a rebuild leaves out the secondary indexes until its tables are filled,
        but for those its own writes look rows up by (`write_indexes`)."""
        for logical, columns in self.tables.items():
            types = {"ts": db.type("ts"), "bigint": db.type("bigint"), "json": db.type("json")}
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {self.table_names[logical]} ({columns.format(**types)})")
        if with_indexes:
            statements = self.index_statements(db.extensions(cursor))
        else:
            statements = [self._index_statement(*index) for index in self.indexes if index[0] in self.write_indexes]
        for statement in statements:
            cursor.execute(statement)

    def index_statements(self, extensions: dict[str, str] | None) -> list[str]:
        """Secondary indexes (for the queries); building them once over full tables beats updating them per row.
        PostgreSQL's own ones are made where their extension is installed (`extensions`: name -> schema; None
        on SQLite)."""
        statements = [self._index_statement(*index) for index in self.indexes]
        if extensions is None:
            return statements
        for suffix, logical, extension, using in self.postgres_indexes:
            if not extension or extension in extensions:
                table = self.table_names[logical]
                method = using.format(schema=extensions.get(extension, ""))
                statements.append(f"CREATE INDEX IF NOT EXISTS {table}_{suffix} ON {table} USING {method}")
        return statements

    def _index_statement(self, suffix: str, logical: str, definition: str) -> str:
        columns, _, where = definition.partition(" WHERE ")
        table = self.table_names[logical]
        partial = f" WHERE {where}" if where else ""
        return f"CREATE INDEX IF NOT EXISTS {table}_{suffix} ON {table} ({columns}){partial}"

    def drop_tables(self, cursor: Cursor) -> None:
        for table in self.table_names.values():
            cursor.execute(f"DROP TABLE IF EXISTS {table}")

    def writer(self, db: ReadDatabase, cursor: Cursor) -> Writer:
        return Writer(db, cursor, self.table_names, 0)

    def flush(self, w: Writer) -> None:
        """Write what `apply` gathered, at the end of a batch and in its transaction (outside any pipeline)."""
        for changes in self.changes.values():
            changes.flush(w)

    def delete_organization_rows(self, w: Writer, organization_id: str) -> None:
        """Delete every row of one organization from this projection's tables, those this batch gathered too.

        Changes the batch has gathered for rows written earlier may still be flushed after this: updates
        and deletes of rows that are gone then change nothing.
        """
        for logical in self.tables:
            if logical in self.changes:
                self.changes[logical].forget_new("organization_id", organization_id)
            w.run(f"DELETE FROM {{{logical}}} WHERE organization_id = %s", organization_id)

    def begin(self, after: int) -> None:
        """A batch starts after position `after`. A projection that remembers things between batches forgets
        them unless it applied the batch that ended there itself: another runner may have applied those."""

    def prepare(self, w: Writer, events: Sequence[Any]) -> None:
        """Before the batch's events are applied, outside the pipeline: read what they will need at once."""

    def ended(self, position: int) -> None:
        """The batch was applied up to `position` (its transaction is yet to commit: see forget_uncommitted)."""

    def forget_uncommitted(self) -> None:
        """The batch rolled back: drop what it gathered (subclasses also drop their caches)."""
        for changes in self.changes.values():
            changes.clear()

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        """Events this projection does not use change nothing (the position still advances)."""


def apply_batch(
    db: ReadDatabase,
    cursor: Cursor,
    projection: Projection,
    batch: Sequence[tuple[int, Any]],
    after: int,
    held: frozenset[str] = frozenset(),
) -> None:
    """Apply the batch's events after position `after` (in order, pipelined on PostgreSQL), then flush.

    Events of the `held` aggregates (parked, see projections.engine.parking) are left out.
    """
    if held:
        batch = [(position, event) for position, event in batch if str(event.originator_id) not in held]
    writer = projection.writer(db, cursor)
    handler_for = projection.handler_for
    projection.begin(after)
    projection.prepare(writer, [event for position, event in batch if position > after])
    with db.pipelined(cursor):
        for position, event in batch:
            if position > after and (handler := handler_for(type(event))) is not None:
                writer.position = position
                handler(projection, event, writer)
    projection.flush(writer)  # outside the pipeline: it may COPY
    projection.ended(max([after, *(position for position, _ in batch)]))


def _digest(definition: object) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def _fail_undecodable(projection: Projection, event: UndecodableEvent, w: Writer) -> None:
    raise ValueError(f"cannot decode the stored {event.topic} event: {event.error}") from event.error
