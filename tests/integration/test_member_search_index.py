"""Member search on PostgreSQL: trigram indexes serve `LIKE '%text%'` where pg_trgm can be installed, and a
database role that may not install it still searches (by scanning), told so by a warning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg
import pytest

from projections import members as members_reads
from projections.engine.catalog import PROJECTIONS
from projections.engine.store import wait_for
from service.bootstrap import Services, build_services
from service.settings import Settings
from tests.factories import new_actor

POSTGRES = pytest.mark.parametrize("store", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


def search_indexes(services: Services) -> set[str]:
    with services.read_db.snapshot() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexdef LIKE '%USING gin%'")
        return {row[0] for row in cursor.fetchall()}


@POSTGRES
def test_member_search_uses_trigram_indexes_on_email_and_name(services: Services) -> None:
    definitions = search_indexes(services)
    members_table = PROJECTIONS["members"].table_names_in(1)["members"]
    on_email = f"ON {services.settings.database.schema}.{members_table} USING gin (lower(email)"
    assert any(on_email in d and "gin_trgm_ops" in d for d in definitions), definitions
    assert any("USING gin (lower(name)" in d and "gin_trgm_ops" in d for d in definitions), definitions
    assert all("gin_pending_list_limit='128'" in d for d in definitions), definitions


@pytest.mark.postgres
def test_a_role_that_may_not_install_pg_trgm_searches_by_scanning(
    postgres_server_url: str, settings_for: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    suffix = uuid4().hex[:10]
    role, database = f"limited_{suffix}", f"limited_{suffix}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"CREATE DATABASE {database}")  # owned by the administrator: the role may not CREATE in it
    with psycopg.connect(urlsplit(postgres_server_url)._replace(path=f"/{database}").geturl(), autocommit=True) as db:
        db.execute(f"CREATE SCHEMA membership AUTHORIZATION {role}")
    parts = urlsplit(postgres_server_url)
    url = parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}", path=f"/{database}").geturl()

    with caplog.at_level(logging.WARNING):
        services = build_services(settings_for(f"{url}?schema=membership"))
    try:
        assert "pg_trgm is not installed" in caplog.text
        assert search_indexes(services) == set()
        owner = new_actor("owner")
        app = services.organizations
        org = app.create_organization(owner, "Acme").organization_id
        services.start_projections()
        wait_for(services.read_db, app.recorder.max_notification_id(), timeout=10)
        page = members_reads.list_members(services.read_db, org, search=owner.email[3:12].upper())
        assert [m.email for m in page.items] == [owner.email]
    finally:
        services.close()
