"""Start-up checks that turn a wrong or unreachable database into one clear line."""

from __future__ import annotations

import sqlite3

import psycopg

from membership.database import ConfigurationError, Database, redact


def check_database(database: Database) -> None:
    """Raise ConfigurationError (one line, no traceback) unless the database answers."""
    if database.backend == "sqlite":
        _check_sqlite(database)
    else:
        _check_postgresql(database)


def _check_sqlite(database: Database) -> None:
    assert database.sqlite_path is not None
    path = database.sqlite_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as connection:
            connection.execute("SELECT 1")
    except (OSError, sqlite3.Error) as error:
        raise ConfigurationError(f"cannot open the SQLite database {str(path)!r}: {error}") from None


def _check_postgresql(database: Database) -> None:
    try:
        with psycopg.connect(
            host=database.host,
            port=database.port,
            user=database.user,
            password=database.password,
            dbname=database.dbname,
            connect_timeout=5,
        ) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ConfigurationError(f"cannot connect to PostgreSQL at {redact(database.url)!r}: {reason}") from None
