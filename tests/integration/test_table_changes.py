"""A batch's gathered row changes, written set-wise, leave the table exactly as the
same changes applied one at a time would (projections.engine.changes), on both stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.engine.base import Writer
from projections.engine.changes import TableChanges, column_types
from projections.engine.sql import POSTGRES_TYPES
from service.bootstrap import Services

DDL = "k TEXT PRIMARY KEY, label TEXT, n INTEGER NOT NULL, at {ts}"
KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), KEYS, st.text("xyz", max_size=3), st.integers(0, 9)),
        st.tuples(st.just("update"), KEYS, st.text("xyz", max_size=3)),
        st.tuples(st.just("increment"), KEYS, st.integers(-3, 3)),
        st.tuples(st.just("delete"), KEYS),
    ),
    max_size=25,
)


@pytest.fixture
def scratch(services: Services) -> Iterator[Services]:
    db = services.read_db
    with db.transaction() as cursor:
        cursor.execute(f"CREATE TABLE scratch ({DDL.format(ts=db.type('ts'))})")
    yield services
    with db.transaction() as cursor:
        cursor.execute("DROP TABLE scratch")


def apply_to_model(model: dict[str, dict[str, object]], operation: tuple[object, ...]) -> None:
    """The meaning of each operation, one at a time, as statements would have it."""
    kind, key, *args = operation
    assert isinstance(key, str)
    if kind == "insert" and key not in model:
        model[key] = {"label": args[0], "n": args[1]}
    elif kind == "update" and key in model:
        model[key]["label"] = args[0]
    elif kind == "increment" and key in model:
        model[key]["n"] += args[0]  # type: ignore[operator]
    elif kind == "delete":
        model.pop(key, None)


def record(changes: TableChanges, model: dict[str, dict[str, object]], operation: tuple[object, ...]) -> None:
    kind, key, *args = operation
    assert isinstance(key, str)
    if kind == "insert" and key not in model:  # a projection never inserts a row twice
        changes.insert(key, label=args[0], n=args[1])
    elif kind == "update":
        changes.update(key, label=args[0])
    elif kind == "increment":
        changes.increment(key, "n", int(args[0]))  # type: ignore[call-overload]
    elif kind == "delete":
        changes.delete(key)


def table(services: Services) -> dict[str, dict[str, object]]:
    with services.read_db.snapshot() as cursor:
        cursor.execute("SELECT k, label, n FROM scratch")
        return {k: {"label": label, "n": n} for k, label, n in cursor.fetchall()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(OPERATIONS, min_size=1, max_size=4))
def test_gathered_changes_equal_changes_one_at_a_time(
    scratch: Services, batches: list[list[tuple[object, ...]]]
) -> None:
    db = scratch.read_db
    with db.transaction() as cursor:
        cursor.execute("DELETE FROM scratch")
    changes = TableChanges("scratch", "k", column_types(DDL.format(**POSTGRES_TYPES)))
    model: dict[str, dict[str, object]] = {}
    for batch in batches:
        for operation in batch:
            record(changes, model, operation)
            apply_to_model(model, operation)
        with db.transaction() as cursor:
            changes.flush(Writer(db, cursor, {"scratch": "scratch"}, 0))
        assert table(scratch) == model


def test_a_row_deleted_and_created_again_in_one_batch_is_the_new_one(scratch: Services) -> None:
    db = scratch.read_db
    changes = TableChanges("scratch", "k", column_types(DDL.format(**POSTGRES_TYPES)))
    changes.insert("a", label="old", n=1)
    with db.transaction() as cursor:
        changes.flush(Writer(db, cursor, {"scratch": "scratch"}, 0))
    changes.increment("a", "n", 5)
    changes.delete("a")
    changes.update("a", label="ignored: the row is gone")
    changes.insert("a", label="new", n=0)
    changes.increment("a", "n", 2)
    with db.transaction() as cursor:
        changes.flush(Writer(db, cursor, {"scratch": "scratch"}, 0))
    assert table(scratch) == {"a": {"label": "new", "n": 2}}
