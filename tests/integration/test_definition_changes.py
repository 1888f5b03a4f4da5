"""A deploy that changes a read model's definition never breaks the live service
(`projections.engine.definitions`), on SQLite and PostgreSQL.

"Built with another definition" is staged by recording another fingerprint on the active
generation, exactly what a generation built by the previous release looks like.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from projections.engine import definitions, store, tracking
from projections.engine.catalog import PROJECTIONS
from projections.engine.rebuild import Rebuild
from projections.engine.sql import ReadDatabase
from projections.members import MembersProjection, list_members
from service.bootstrap import OPERATIONAL_TABLES, Services
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.helpers import busy_team, generation_rows, table_rows
from tests.integration.test_server_process import run_membership


def built_with_another_definition(services: Services, name: str, columns_too: bool) -> None:
    with services.read_db.transaction() as cursor:
        cursor.execute(
            services.read_db.sql(
                f"UPDATE {tracking.TABLE} SET fingerprint = 'earlier'"
                + (", columns_fingerprint = 'earlier'" if columns_too else "")
                + " WHERE name = %s AND state = 'active'"
            ),
            (name,),
        )


def active(services: Services, name: str) -> tracking.Generation:
    with services.read_db.snapshot() as cursor:
        return next(
            g for g in tracking.all_generations(services.read_db, cursor) if g.name == name and g.state == "active"
        )


def test_a_definition_fingerprint_follows_tables_indexes_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    definition, columns = MembersProjection.fingerprint(), MembersProjection.columns_fingerprint()
    monkeypatch.setattr(MembersProjection, "indexes", [*MembersProjection.indexes, ("by_name", "members", "name")])
    assert (MembersProjection.fingerprint(), MembersProjection.columns_fingerprint()) != (definition, columns)
    assert MembersProjection.columns_fingerprint() == columns  # the old tables would still fit
    monkeypatch.undo()
    monkeypatch.setattr(MembersProjection, "version", MembersProjection.version + 1)
    assert MembersProjection.fingerprint() != definition
    monkeypatch.undo()
    monkeypatch.setattr(MembersProjection, "tables", {**MembersProjection.tables, "extra": "id TEXT"})
    assert MembersProjection.columns_fingerprint() != columns
    assert len({p.fingerprint() for p in PROJECTIONS.values()}) == len(PROJECTIONS)


def test_same_columns_the_service_rebuilds_it_by_itself_while_serving_the_old_tables(services: Services) -> None:
    busy_team(services)
    assert services.runner is not None
    services.runner.catch_up()
    organization = table_rows(services, "SELECT organization_id FROM {organizations}")[0][0]
    listed = list_members(services.read_db, organization).items
    built_with_another_definition(services, "members", columns_too=False)

    assert definitions.check_startable(services.read_db) == ["members"]  # it may start: the tables fit
    assert list_members(services.read_db, organization).items == listed  # still served, from generation 1
    thread = services.start_definition_rebuilds(retired_grace_s=0)  # nobody reads the old tables any more
    assert thread is not None
    thread.join(timeout=60)

    rebuilt = active(services, "members")
    assert rebuilt.generation == 2 and rebuilt.fingerprint == MembersProjection.fingerprint()
    assert active(services, "roles").generation == 1  # the others are left alone
    assert definitions.outdated(services.read_db) == []
    assert list_members(services.read_db, organization).items == listed
    assert generation_rows(services, "members", 2)["members"]


def test_other_columns_it_refuses_to_start_and_names_the_rebuild_to_run(services: Services) -> None:
    busy_team(services)
    assert services.runner is not None
    services.runner.catch_up()
    built_with_another_definition(services, "audit", columns_too=True)

    with pytest.raises(definitions.DefinitionChangedError) as refused:
        definitions.check_startable(services.read_db)
    assert str(refused.value) == "the tables of the audit read model changed; run: membership projections rebuild audit"
    assert services.start_definition_rebuilds() is None  # never rebuilt behind the operator's back

    Rebuild(services.organizations, services.read_db, ["audit"], retired_grace_s=0).run()
    assert definitions.check_startable(services.read_db) == []


def test_generations_recorded_before_fingerprints_are_taken_as_todays(services: Services) -> None:
    with services.read_db.transaction() as cursor:
        cursor.execute(f"UPDATE {tracking.TABLE} SET fingerprint = NULL, columns_fingerprint = NULL")
    store.setup(services.read_db, *OPERATIONAL_TABLES)  # the next start
    assert definitions.outdated(services.read_db) == []
    assert active(services, "jobs").fingerprint == PROJECTIONS["jobs"].fingerprint()


def test_the_worker_process_refuses_with_one_line(services: Services, store: str, tmp_path: Path) -> None:
    built_with_another_definition(services, "invitations", columns_too=True)
    worker = run_membership(
        "worker", cwd=tmp_path, MEMBERSHIP_DATABASE_URL=store, MEMBERSHIP_SECRET_KEY=TEST_SECRET_KEY
    )
    assert worker.returncode == 2
    assert worker.stderr.strip().splitlines()[-1] == (
        "membership: the tables of the invitations read model changed; run: membership projections rebuild invitations"
    )


def test_a_tracking_table_from_before_fingerprints_gets_the_columns_and_keeps_its_rows(
    store: str, settings_for: Callable[..., Settings]
) -> None:
    db = ReadDatabase(settings_for(store).database)
    try:
        with db.transaction() as cursor:  # the table as releases before fingerprints made it
            cursor.execute(
                f"CREATE TABLE {tracking.TABLE} (name TEXT NOT NULL, generation INTEGER NOT NULL, state TEXT NOT NULL,"
                f" position {db.type('bigint')} NOT NULL DEFAULT 0, error TEXT, error_position {db.type('bigint')},"
                f" updated_at {db.type('ts')}, PRIMARY KEY (name, generation))"
            )
            cursor.execute(db.sql(f"INSERT INTO {tracking.TABLE} (name, generation, state, position) VALUES (%s, 1, %s, 7)"),
                           ("members", "active"))  # fmt: skip
            tracking.create_table(db, cursor)
            tracking.create_table(db, cursor)  # every later start: nothing more to add
            assert {"fingerprint", "columns_fingerprint"} <= db.columns(cursor, tracking.TABLE)
            [members] = tracking.all_generations(db, cursor)
        assert (members.position, members.fingerprint) == (7, None)
    finally:
        db.close()
