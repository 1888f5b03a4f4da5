"""One small SQL layer for both stores, so every projection is written once.

Statements are written with `%s` placeholders and `{name}` table names; the
dialect adapts placeholders (`?` for SQLite), column types and timestamps.
SQLite keeps timestamps as fixed-width UTC ISO text, which sorts correctly.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool

from membership.database import Database

log = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_S = 30.0
FOLLOW_TIMEOUT_S, FOLLOW_RETRY_S = 0.5, 1.0  # the relay of other processes' commits: its checks, its retries
SCHEMA_LOCK_KEY = 724_000
ORGANIZATION_LOCK_SPACE = 724_001  # the first key of the two-key advisory locks of organization_lock  # pg_advisory_lock key held while the service creates its tables
# The portable column types projections declare ({ts}, {bigint}, {json}) in each dialect.
SQLITE_TYPES = {"ts": "TEXT", "bigint": "INTEGER", "json": "TEXT"}
POSTGRES_TYPES = {"ts": "timestamptz", "bigint": "bigint", "json": "text"}


class Cursor(Protocol):
    """What projections and queries use of a DB-API cursor."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Progress:
    """Wakes the threads of this process that wait for the read models (`store.wait_for`) as soon as a
    projection runner of this process commits, instead of leaving them to poll the database."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._commits = 0
        self.runners = 0  # runners of this process now running: while there is one, waiters can sleep
        self.listening = False  # True while the commits of other processes' runners are relayed (PostgreSQL)

    @property
    def relayed(self) -> bool:
        """Whether some runner's commits wake the waiters: one of this process, or another's by NOTIFY."""
        return self.runners > 0 or self.listening

    @property
    def commits(self) -> int:
        return self._commits

    @contextmanager
    def running(self) -> Iterator[None]:
        """Counts a runner of this process for the duration of the block."""
        with self._changed:
            self.runners += 1
        try:
            yield
        finally:
            with self._changed:
                self.runners -= 1

    def committed(self) -> None:
        with self._changed:
            self._commits += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Until a commit after the `seen`th one (or `timeout`); returns the number of commits so far."""
        with self._changed:
            self._changed.wait_for(lambda: self._commits != seen, timeout)
            return self._commits


# PostgreSQL extensions the read models' indexes use, and what they serve (see Projection.postgres_indexes)
EXTENSIONS = {"pg_trgm": "member search"}


class ReadDatabase:
    """Connections to the read-model tables (they live beside the event store)."""

    def __init__(self, database: Database, pool_size: int | None = None) -> None:
        """`pool_size` defaults to `database.connections`: one per thread of the process that may query."""
        self.database = database
        self.is_sqlite = database.backend == "sqlite"
        self.progress = Progress()
        self._follower: threading.Thread | None = None
        self._closing = threading.Event()
        self._local = threading.local()
        self._sqlite_connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        if not self.is_sqlite:
            self._pool = ConnectionPool(
                # Autocommit: a read is one round trip (see snapshot); transaction() says BEGIN and COMMIT itself.
                kwargs={**self._pg_kwargs(), "autocommit": True},
                min_size=1,
                max_size=pool_size or database.connections,
                open=True,
                name="read-models",
                timeout=10,
            )

    # -- dialect -----------------------------------------------------------
    def sql(self, statement: str) -> str:
        return statement.replace("%s", "?") if self.is_sqlite else statement

    def type(self, name: str) -> str:
        """Portable column types: ts, bigint, json."""
        return (SQLITE_TYPES if self.is_sqlite else POSTGRES_TYPES)[name]

    def install_extensions(self, cursor: Cursor) -> None:
        """PostgreSQL: the extensions some indexes need (EXTENSIONS), each where the role may install it (a
        trusted extension: `CREATE` on the database is enough); without one, a warning, and queries that scan
        where its index would have served."""
        if self.is_sqlite:
            return
        for name, serves in EXTENSIONS.items():
            cursor.execute("SAVEPOINT extension")
            try:
                cursor.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")
            except psycopg.Error as error:
                cursor.execute("ROLLBACK TO SAVEPOINT extension")
                log.warning("%s is not installed (%s): %s will scan instead of using an index", name, error, serves)
            else:
                cursor.execute("RELEASE SAVEPOINT extension")

    def extensions(self, cursor: Cursor) -> dict[str, str] | None:
        """The installed extensions of EXTENSIONS, each with the (quoted) schema it was installed in; None on
        SQLite (no PostgreSQL index at all)."""
        if self.is_sqlite:
            return None
        cursor.execute(
            "SELECT e.extname, n.nspname FROM pg_catalog.pg_extension e"
            " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = ANY(%s)",
            (list(EXTENSIONS),),
        )
        return {name: f'"{schema}"' for name, schema in cursor.fetchall()}

    def columns(self, cursor: Cursor, table: str) -> set[str]:
        """The columns `table` has (none when there is no such table)."""
        if self.is_sqlite:
            cursor.execute(self.sql("SELECT name FROM pragma_table_info(%s)"), (table,))
        else:
            # pg_catalog rather than information_schema: the same answer at a tenth of the server's work.
            cursor.execute(
                "SELECT attname FROM pg_catalog.pg_attribute"
                " WHERE attrelid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident(%s))"
                " AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
        return {row[0] for row in cursor.fetchall()}

    def add_missing_columns(self, cursor: Cursor, table: str, columns: dict[str, str]) -> None:
        """Give a table made before these columns existed the ones it lacks (name -> type; NULL in old rows).

        Looked up first: ALTER TABLE locks the table even when there is nothing to add.
        """
        present = self.columns(cursor, table)
        for column, column_type in columns.items():
            if column not in present:
                cursor.execute(f"ALTER TABLE {table} ADD COLUMN {column} {column_type}")

    def to_db_time(self, value: datetime | None) -> Any:
        if value is None or not self.is_sqlite:
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")

    def when(self, value: Any) -> datetime:
        """A NOT NULL timestamp column's value."""
        moment = self.from_db_time(value)
        assert moment is not None
        return moment

    def from_db_time(self, value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value)

    # -- connections -------------------------------------------------------
    @contextmanager
    def transaction(self, wait_for_disk: bool = True) -> Iterator[Cursor]:
        """One transaction: committed if the block ends normally, else rolled back.

        On SQLite the write lock is taken up front (BEGIN IMMEDIATE), so two
        writers never deadlock on a lock upgrade. `wait_for_disk=False` commits
        on PostgreSQL without waiting for the WAL flush (synchronous_commit off):
        a server crash may lose the last such transactions, whole, never half of
        one -- for rebuilds, whose positions are in the same transactions.
        """
        if self.is_sqlite:
            connection = self._sqlite_connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection.cursor()
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        else:
            assert self._pool is not None
            with self._pool.connection() as pg, pg.transaction():
                cursor = pg.cursor()
                if not wait_for_disk:
                    cursor.execute("SET LOCAL synchronous_commit = off")
                yield cursor

    @contextmanager
    def snapshot(self) -> Iterator[Cursor]:
        """A cursor to read with (never to write).

        SQLite: one consistent moment (a read transaction, rolled back). PostgreSQL: each statement sees what
        was committed when it started, as READ COMMITTED gives each statement of a transaction anyway, without
        the BEGIN and ROLLBACK round trips (a third of a short read's time and server work). Reads that span a
        generation switch still find the tables they name: a rebuild keeps retired tables for a grace period.
        """
        if self.is_sqlite:
            connection = self._sqlite_connection()
            connection.execute("BEGIN")
            try:
                yield connection.cursor()
            finally:
                connection.rollback()
        else:
            assert self._pool is not None
            with self._pool.connection() as pg:
                yield pg.cursor()

    @contextmanager
    def pipelined(self, cursor: Cursor) -> Iterator[None]:
        """On PostgreSQL, send the block's statements without waiting for each answer
        (rebuilds run thousands of small statements per transaction)."""
        if self.is_sqlite:
            yield
            return
        with cursor.connection.pipeline():  # type: ignore[attr-defined]
            yield

    def copy_rows(self, cursor: Cursor, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows at once: COPY on PostgreSQL (not inside a pipeline), executemany on SQLite."""
        if self.is_sqlite:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            return
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in rows:
                copy.write_row(row)

    def compact(self, tables: Sequence[str]) -> None:
        """Rewrite `tables` so that deleted and overwritten rows leave nothing behind in the files (erased
        personal data): PostgreSQL's VACUUM FULL of each (it locks the table while it copies it); on SQLite
        VACUUM of the whole file, then the write-ahead log emptied."""
        if self.is_sqlite:
            lite = self._sqlite_connection()
            lite.execute("VACUUM")
            for _ in range(50):  # readers in other connections may hold the log a moment
                busy = lite.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                if not busy:
                    return
                time.sleep(0.1)
            raise RuntimeError("the SQLite write-ahead log could not be emptied: readers kept it busy for 5 s")
        with psycopg.connect(**self._pg_kwargs(), autocommit=True) as connection:
            for table in tables:
                connection.execute(f"VACUUM FULL {table}")

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        """Held while tables are created: processes starting together take turns (PostgreSQL).

        Concurrent CREATE TABLE IF NOT EXISTS statements collide in PostgreSQL's catalogs
        ("tuple concurrently updated", duplicate pg_type rows); under this lock the first
        process creates everything and the others find it there. SQLite's own write lock
        already serialises them.
        """
        if self.is_sqlite:
            yield
            return
        with psycopg.connect(**self._pg_kwargs(), autocommit=True) as connection:
            connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
            try:
                yield
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process got the lock `name` (held for the block) rather than another process.

        Never waits. PostgreSQL: a session advisory lock; SQLite: a file lock beside the database.
        """
        if self.is_sqlite:
            assert self.database.sqlite_path is not None
            path = self.database.sqlite_path.with_name(f"{self.database.sqlite_path.name}.{name}.lock")
            with open(path, "a") as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(file, fcntl.LOCK_UN)
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")  # a key of our own, per name
        with psycopg.connect(**self._pg_kwargs(), autocommit=True) as connection:
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            acquired = bool(row and row[0])
            try:
                yield acquired
            finally:
                if acquired:
                    connection.execute("SELECT pg_advisory_unlock(%s)", (key,))

    @contextmanager
    def organization_lock(self, organization_id: UUID) -> Iterator[None]:
        """Held by one process at a time per organization (PostgreSQL; SQLite serialises its writers itself):
        commands of several server processes on one organization queue for it instead of conflicting.
        A transaction-scoped advisory lock, so nothing can leave it held; waiting past 5 s is an outage."""
        if self.is_sqlite:
            yield
            return
        assert self._pool is not None
        with self._pool.connection() as pg, pg.transaction():
            pg.execute(
                "SELECT set_config('lock_timeout', '5s', true), pg_advisory_xact_lock(%s, %s)",
                (ORGANIZATION_LOCK_SPACE, organization_id.int & 0x7FFFFFFF),  # two organizations may share a key
            )
            yield

    # -- who has applied what, across processes --------------------------------
    @property
    def applied_channel(self) -> str:
        """Where runners NOTIFY their commits: one channel per schema (services may share a server)."""
        return f"applied_{self.database.schema}"[:63]

    def notify_applied(self, cursor: Cursor) -> None:
        """Tell the other processes, when this transaction commits, that read models moved (PostgreSQL)."""
        if not self.is_sqlite:
            cursor.execute("SELECT pg_notify(%s, '')", (self.applied_channel,))

    def follow_applied(self) -> None:
        """Relay other processes' runner commits to this process's waiters (`progress`), from a thread
        LISTENing on `applied_channel`; reconnects after an outage. Idempotent; nothing on SQLite."""
        with self._connections_lock:
            if self.is_sqlite or self._follower is not None:
                return
            self._follower = threading.Thread(target=self._follow, name="read-models-follower", daemon=True)
        self._follower.start()

    def _follow(self) -> None:
        while not self._closing.is_set():
            try:
                with self.listen_connection(self.applied_channel) as connection:
                    self.progress.listening = True
                    self.progress.committed()  # anything committed before LISTEN: waiters look again
                    while not self._closing.is_set():
                        for _ in connection.notifies(timeout=FOLLOW_TIMEOUT_S):
                            self.progress.committed()
            except Exception as error:  # an outage: waiters poll meanwhile, and this tries again
                log.debug("the relay of read-model commits stopped: %s", error)
            finally:
                self.progress.listening = False
            self._closing.wait(FOLLOW_RETRY_S)

    def listen_connection(self, channel: str) -> psycopg.Connection[Any]:
        """A dedicated autocommit connection LISTENing on `channel` (PostgreSQL only)."""
        connection = psycopg.connect(**self._pg_kwargs(), autocommit=True)
        connection.execute(f'LISTEN "{channel}"')
        return connection

    def close(self) -> None:
        self._closing.set()  # the relay ends (and closes its connection) within FOLLOW_TIMEOUT_S
        if self._pool is not None:
            self._pool.close()
        with self._connections_lock:
            for connection in self._sqlite_connections:
                connection.close()
            self._sqlite_connections.clear()
        self._local = threading.local()

    def _sqlite_connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            assert self.database.sqlite_path is not None
            connection = sqlite3.connect(
                self.database.sqlite_path,
                timeout=SQLITE_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,  # used by one thread; closed by close() from another
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
            with self._connections_lock:
                self._sqlite_connections.append(connection)
        return connection

    def _pg_kwargs(self) -> dict[str, Any]:
        db = self.database
        return {
            "host": db.host,
            "port": db.port,
            "user": db.user,
            "password": db.password,
            "dbname": db.dbname,
            "connect_timeout": 5,
            "options": f"-c search_path={db.schema} -c timezone=UTC",
        }
