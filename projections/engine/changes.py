"""Row changes to one table, gathered over a batch of events and written set-wise.

Applying events one statement at a time costs a round of Python and server
work per statement; most of a batch's changes touch rows the same batch
created, or a few rows many times (a link's use count). `TableChanges` keeps
them in memory instead: rows created in the batch are changed in place, and
at the end of the batch everything is written at once: deletes, then updates
grouped by the columns they set (on PostgreSQL, one `UPDATE ... FROM unnest()`
per group), then the new rows (COPY on PostgreSQL). The outcome is the
same as running each event's statement in order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.engine.base import Writer

Row = dict[str, Any]
_CONSTRAINTS = ("PRIMARY", "UNIQUE", "FOREIGN", "CHECK", "CONSTRAINT")


def column_types(ddl: str) -> dict[str, str]:
    """Column name -> SQL type of a table's column definitions ("a TEXT NOT NULL, b INTEGER, ...")."""
    types: dict[str, str] = {}
    for definition in re.split(r",(?![^()]*\))", ddl):  # commas outside parentheses
        name, sql_type, *_ = definition.split()
        if name.upper() not in _CONSTRAINTS:
            types[name] = sql_type
    return types


class TableChanges:
    """Inserts, updates, increments and deletes of one table's rows (by key) within one batch."""

    def __init__(self, logical_table: str, key: str, types: dict[str, str]) -> None:
        self.logical_table = logical_table
        self.key = key
        self.columns = tuple(types)
        self.types = types  # PostgreSQL column types, to cast the arrays updates are sent in
        self.new: dict[str, Row] = {}  # rows created in this batch, by key
        self.updates: dict[str, Row] = {}  # values to set on rows from earlier batches
        self.increments: dict[str, Row] = {}  # amounts to add to columns of rows from earlier batches
        self.deleted: set[str] = set()  # rows from earlier batches to delete

    # -- recording ---------------------------------------------------------
    def insert(self, key: str, **values: Any) -> None:
        row = dict.fromkeys(self.columns)
        row.update(values)
        row[self.key] = key
        self.new[key] = row

    def update(self, key: str, **values: Any) -> None:
        row = self.new.get(key)
        if row is not None:
            row.update(values)
        elif key not in self.deleted:
            self.updates.setdefault(key, {}).update(values)

    def increment(self, key: str, column: str, by: int = 1) -> None:
        row = self.new.get(key)
        if row is not None:
            row[column] += by
        elif key not in self.deleted:
            amounts = self.increments.setdefault(key, {})
            amounts[column] = amounts.get(column, 0) + by

    def delete(self, key: str) -> None:
        if self.new.pop(key, None) is None:
            self.deleted.add(key)
            self.updates.pop(key, None)
            self.increments.pop(key, None)

    def forget_new(self, column: str, value: Any) -> None:
        """Drop the rows created in this batch whose `column` holds `value` (about to be deleted with the rest)."""
        self.new = {key: row for key, row in self.new.items() if row[column] != value}

    def clear(self) -> None:
        self.new, self.updates, self.increments, self.deleted = {}, {}, {}, set()

    # -- writing -----------------------------------------------------------
    def flush(self, w: Writer) -> None:
        """Write the batch's changes in order: deletes, updates, then new rows; then forget them."""
        new, updates, increments, deleted = self.new, self.updates, self.increments, self.deleted
        self.clear()
        table = w.tables[self.logical_table]
        if deleted:
            self._delete(w, table, sorted(deleted))
        for (set_columns, add_columns), keys in self._update_groups(updates, increments).items():
            rows = [
                (key, *(updates[key][c] for c in set_columns), *(increments[key][c] for c in add_columns))
                for key in keys
            ]
            self._update(w, table, set_columns, add_columns, rows)
        if new:
            w.copy(self.logical_table, self.columns, [[row[c] for c in self.columns] for row in new.values()])

    @staticmethod
    def _update_groups(
        updates: dict[str, Row], increments: dict[str, Row]
    ) -> dict[tuple[tuple[str, ...], ...], list[str]]:
        """Keys grouped by which columns they set and which they add to (one statement per group)."""
        groups: dict[tuple[tuple[str, ...], ...], list[str]] = defaultdict(list)
        for key in sorted(updates.keys() | increments.keys()):  # sorted: a stable lock order between writers
            signature = (tuple(sorted(updates.get(key, ()))), tuple(sorted(increments.get(key, ()))))
            groups[signature].append(key)
        return groups

    def _delete(self, w: Writer, table: str, keys: list[str]) -> None:
        if w.db.is_sqlite:
            w.cursor.executemany(f"DELETE FROM {table} WHERE {self.key} = ?", [(key,) for key in keys])
        else:
            w.cursor.execute(f"DELETE FROM {table} WHERE {self.key} = ANY(%s)", (keys,))

    def _update(
        self,
        w: Writer,
        table: str,
        set_columns: tuple[str, ...],
        add_columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """`rows` are (key, values to set..., amounts to add...)."""
        if w.db.is_sqlite:
            # SQLite has no UPDATE ... FROM unnest(); its statements are cheap in-process calls.
            assignments = [f"{c} = ?" for c in set_columns] + [f"{c} = {c} + ?" for c in add_columns]
            sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {self.key} = ?"
            w.cursor.executemany(sql, [(*row[1:], row[0]) for row in rows])
            return
        assignments = [f"{c} = v.{c}" for c in set_columns] + [f"{c} = {table}.{c} + v.{c}" for c in add_columns]
        columns = (self.key, *set_columns, *add_columns)
        arrays = ", ".join(f"%s::{self.types[c]}[]" for c in columns)
        sql = (
            f"UPDATE {table} SET {', '.join(assignments)}"
            f" FROM unnest({arrays}) AS v({', '.join(columns)}) WHERE {table}.{self.key} = v.{self.key}"
        )
        w.cursor.execute(sql, [list(values) for values in zip(*rows, strict=True)])
