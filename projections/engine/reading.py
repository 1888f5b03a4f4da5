"""Reading the read models: one transaction over the active generation, and keyset-paged lists.

Every read resolves the active tables inside its own transaction (share-locked on PostgreSQL),
so a rebuild can switch generations without a reader ever meeting a missing or half-built
table. Statements name tables as `{members}`; `Tables.fetch` fills in the active generation's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from membership.text import text_problem
from projections.engine import tracking
from projections.engine.sql import Cursor, ReadDatabase

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    next_cursor: str | None


class Tables:
    """An open read transaction and the names of the active tables in it."""

    def __init__(self, db: ReadDatabase, cursor: Cursor, generations: dict[str, int]) -> None:
        self.db = db
        self.cursor = cursor
        # Imported here: the catalog imports every read model, and each read model imports this module.
        from projections.engine.catalog import PROJECTIONS

        self._names: dict[str, str] = {}
        for name, generation in generations.items():
            self._names.update(PROJECTIONS[name].table_names_in(generation))

    def fetch(self, statement: str, *params: Any) -> list[Any]:
        self.cursor.execute(self.db.sql(statement.format(**self._names)), params)
        return self.cursor.fetchall()


@contextmanager
def read(db: ReadDatabase) -> Iterator[Tables]:
    with db.snapshot() as cursor:
        yield Tables(db, cursor, tracking.active_generations(db, cursor))


def like_literal(text: str) -> str:
    """`text` matched literally inside a LIKE pattern (with ESCAPE '!')."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """The values a cursor holds; ValueError when it was not made by `encode_cursor`."""
    if not cursor.isascii() or not all(c.isalnum() or c in "-_" for c in cursor):
        raise ValueError("not a valid cursor")  # the decoder would skip stray characters, not refuse them
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as error:
        raise ValueError("not a valid cursor") from error
    if not isinstance(values, list) or len(values) != size or not all(isinstance(v, str | int) for v in values):
        raise ValueError("not a valid cursor")
    return values


@dataclass(frozen=True)
class Key:
    """One expression of a list's order, and what its cursors hold for it (str, int or datetime)."""

    column: str
    descending: bool = False
    kind: type = str


def ordered_page(
    db: ReadDatabase,
    count_from: str,
    select: str,
    filters: str,
    params: Sequence[Any],
    keys: Sequence[Key],
    cursor: str | None,
    limit: int,
    counted: bool = True,
) -> tuple[int, list[Any], bool]:
    """How many rows match (-1 unless `counted`), the first `limit` after the cursor in the order of `keys`, and
    whether more follow."""
    after, after_params = _after(db, keys, cursor) if cursor else ("", [])
    with read(db) as tables:
        total = tables.fetch(f"SELECT COUNT(*) FROM {count_from} WHERE {filters}", *params)[0][0] if counted else -1
        rows = tables.fetch(
            f"{select} WHERE {filters}{after} ORDER BY {order_by(keys)} LIMIT %s", *params, *after_params, limit + 1
        )
    return int(total), rows[:limit], len(rows) > limit


def order_by(keys: Sequence[Key]) -> str:
    return ", ".join(f"{key.column}{' DESC' if key.descending else ''}" for key in keys)


def _after(db: ReadDatabase, keys: Sequence[Key], cursor: str) -> tuple[str, list[Any]]:
    """` AND ...`: the rows after the cursor in the order of `keys`; ValueError for a cursor we did not make."""
    values = [_cursor_value(db, key, value) for key, value in zip(keys, decode_cursor(cursor, len(keys)), strict=True)]
    clauses, params = [], [values[0]]
    for i, key in enumerate(keys):
        ties = [f"{tied.column} = %s" for tied in keys[:i]]
        clauses.append(" AND ".join([*ties, f"{key.column} {'<' if key.descending else '>'} %s"]))
        params.extend(values[: i + 1])
    # The first key's bound alone lets an index range scan start at the cursor.
    bound = f"{keys[0].column} {'<=' if keys[0].descending else '>='} %s"
    return f" AND {bound} AND (({') OR ('.join(clauses)}))", params


def _cursor_value(db: ReadDatabase, key: Key, value: Any) -> Any:
    if key.kind is datetime and isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("not a valid cursor")
        try:
            return db.to_db_time(moment.astimezone(UTC))
        except OverflowError:
            raise ValueError("not a valid cursor") from None
    if type(value) is not key.kind:
        raise ValueError("not a valid cursor")
    if isinstance(value, str) and text_problem(value) is not None:
        raise ValueError("not a valid cursor")  # never a stored value; PostgreSQL would refuse a NUL with a 500
    return value


def cursor_after(*values: Any) -> str:
    """The cursor for the rows after one with these key values."""
    return encode_cursor(*(value.isoformat() if isinstance(value, datetime) else value for value in values))
