"""Where the service keeps its data: one SQLite file, or one PostgreSQL database.

`MEMBERSHIP_DATABASE_URL` becomes a `Database`, which the write side translates into the
eventsourcing library's own settings (`eventsourcing_env`) and the read side opens
(`projections.engine.sql.ReadDatabase`). The rest of the configuration is `service.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from eventsourcing.utils import get_topic

from membership.persistence import PollingSQLiteApplicationRecorder

DEFAULT_REQUEST_THREADS = 8  # threads answering requests in one `membership serve` process
# Besides those, threads of one process that may each hold a connection of each pool at once: the
# projection runner, the invitation mailer, the bulk-job runner and the snapshot taker.
BACKGROUND_THREADS = 4
SQLITE_POOL_CONNECTIONS = 15  # eventsourcing's SQLite pool: 5 kept + 10 overflow (not configurable)



class ConfigurationError(Exception):
    """A setting is missing or wrong; the message is one line a person can act on."""


@dataclass(frozen=True)
class Database:
    """Where events and read models live: one SQLite file, or one PostgreSQL database."""

    url: str
    backend: str  # "sqlite" or "postgresql"
    sqlite_path: Path | None = None
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = field(default="", repr=False)
    dbname: str = ""
    schema: str = "public"
    local_dir: Path | None = None  # MEMBERSHIP_VAR_DIR
    request_threads: int = DEFAULT_REQUEST_THREADS  # `membership serve --threads`; sizes the connection pools

    @classmethod
    def from_url(cls, url: str) -> Database:
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            return cls._sqlite(url, parts.path)
        if parts.scheme in ("postgresql", "postgres"):
            return cls._postgresql(url)
        raise ConfigurationError(
            f"MEMBERSHIP_DATABASE_URL: unsupported scheme {parts.scheme!r} in {redact(url)!r}; "
            "use sqlite:///path/to/file.db or postgresql://user:password@host:port/dbname"
        )

    @classmethod
    def _sqlite(cls, url: str, path: str) -> Database:
        # sqlite:///relative/file.db and sqlite:////absolute/file.db, as SQLAlchemy spells them.
        relative = path[1:] if path.startswith("/") else path
        if not relative or relative == ":memory:":
            raise ConfigurationError(f"MEMBERSHIP_DATABASE_URL: {url!r} names no database file")
        return cls(url=url, backend="sqlite", sqlite_path=Path(relative))

    @classmethod
    def _postgresql(cls, url: str) -> Database:
        parts = urlsplit(url)
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise ConfigurationError(f"MEMBERSHIP_DATABASE_URL: {redact(url)!r} names no database")
        try:
            port = parts.port or 5432
        except ValueError:
            raise ConfigurationError(f"MEMBERSHIP_DATABASE_URL: bad port in {redact(url)!r}") from None
        schema = parse_qs(parts.query).get("schema", ["public"])[0]
        return cls(
            url=url,
            backend="postgresql",
            host=unquote(parts.hostname or "localhost"),
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=dbname,
            schema=schema,
        )

    @property
    def var_dir(self) -> Path:
        """Where local files go (development keys, the e-mail outbox): MEMBERSHIP_VAR_DIR,
        else beside the SQLite file, else ./var."""
        if self.local_dir is not None:
            return self.local_dir
        return self.sqlite_path.parent if self.sqlite_path else Path("var")

    @property
    def connections(self) -> int:
        """Connections one process may use at once, per pool: one for each request and background thread."""
        return self.request_threads + BACKGROUND_THREADS

    def serving(self, threads: int) -> Database:
        """This database for a server process answering requests with `threads` threads."""
        if self.backend == "sqlite" and threads + BACKGROUND_THREADS > SQLITE_POOL_CONNECTIONS:
            limit = SQLITE_POOL_CONNECTIONS - BACKGROUND_THREADS
            raise ConfigurationError(f"MEMBERSHIP_THREADS: at most {limit} threads on SQLite, not {threads}")
        return replace(self, request_threads=threads)

    def eventsourcing_env(self) -> dict[str, str]:
        """The library settings for this database (applications and projections)."""
        if self.backend == "sqlite":
            assert self.sqlite_path is not None
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": "30",
                "APPLICATION_RECORDER_TOPIC": get_topic(PollingSQLiteApplicationRecorder),
            }
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_SCHEMA": self.schema,
            # The library retries ~10 times: keep each wait short so failures surface in seconds.
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_LOCK_TIMEOUT": "5",
            # Kept open: 1; opened when busy (and closed after 10 idle minutes): up to one connection per
            # thread, so none waits for another. Each connection costs the server ~10 ms of CPU to start, and
            # processes that never get busy (CLIs, a second API process, tests) need not pay for four.
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": str(max(self.connections - 1, 0)),
            # No ping before each use (a round trip per statement group): a connection the server dropped
            # fails its first statement, the pool discards it, and the library's and the application's
            # retries take another (tests/integration/test_faults.py restarts PostgreSQL under load).
            "POSTGRES_PRE_PING": "n",
        }



def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
