"""Fixtures shared by every test: the two real stores, and application factories.

PostgreSQL comes from ./scripts/test, which starts a throwaway server and sets
MEMBERSHIP_TEST_POSTGRES_URL. Without it the PostgreSQL tests fail loudly
(never skip): select `-m "not postgres"` explicitly to run without a server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from membership import Organizations
from projections.engine.runner import ProjectionRunner
from service.bootstrap import Services, build_organizations, build_services
from service.settings import Settings

POSTGRES_URL_VARIABLE = "MEMBERSHIP_TEST_POSTGRES_URL"
THROWAWAY_SERVER_VARIABLE = "MEMBERSHIP_TEST_POSTGRES_THROWAWAY"  # set by ./scripts/test, which deletes the server
TEST_SECRET_KEY = "test-secret-key-" + "x" * 32
STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# For a test whose outcome the store cannot change (a message's composition, the transport, argument checks, a
# rule the domain decides) in a module whose other tests run on both stores: it runs on the embedded one.
EMBEDDED_STORE_ONLY = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.fail(
            f"{POSTGRES_URL_VARIABLE} is not set: run ./scripts/test (it starts PostgreSQL), "
            'or deselect these tests with -m "not postgres"',
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    """A database of its own for this test session, dropped at the end (unless the server is thrown away)."""
    parts = urlsplit(postgres_server_url)
    dbname = f"membership_test_{uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=parts.username or "postgres",
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        password=parts.password,
        dbname=dbname,
    )
    janitor.init()
    yield parts._replace(path=f"/{dbname}").geturl()
    if not os.environ.get(THROWAWAY_SERVER_VARIABLE):
        janitor.drop()  # ~4 s for a session's hundreds of schemas: not worth it on a server about to go


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of one real store, empty; tests using it run once per store."""
    return store_url(request, tmp_path)


def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of the store `request.param` names.

    On PostgreSQL each test gets a schema of its own, so tests never see each other's tables.
    """
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_database_url"))
        schema = f"t_{uuid4().hex[:16]}"
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        return f"{url}?schema={schema}"
    return f"sqlite:///{tmp_path / 'membership.db'}"


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    def make(database_url: str, **env: str) -> Settings:
        return Settings.from_env(
            {
                "MEMBERSHIP_DATABASE_URL": database_url,
                "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
                "MEMBERSHIP_VAR_DIR": str(tmp_path / "var"),
                **env,
            }
        )

    return make


@pytest.fixture
def make_organizations(store: str, settings_for: Callable[..., Settings]) -> Iterator[Callable[..., Organizations]]:
    """Builds application instances on the store (each like a separate process); closes them after."""
    made: list[Organizations] = []

    def make(**overrides: object) -> Organizations:
        app = build_organizations(settings_for(store), **overrides)
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


@pytest.fixture
def organizations(make_organizations: Callable[..., Organizations]) -> Organizations:
    return make_organizations()


@pytest.fixture
def services(store: str, settings_for: Callable[..., Settings]) -> Iterator[Services]:
    """The write side and the read models on one store, projections applied on demand."""
    built = build_services(settings_for(store))
    built.runner = ProjectionRunner(built.organizations, built.read_db)
    yield built
    built.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: spread over the xdist workers from the start, they end alongside the rest
    instead of alone at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
