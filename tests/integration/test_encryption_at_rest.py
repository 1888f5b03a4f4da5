"""Events and snapshots encrypted at rest (AES-GCM) and compressed (zlib) as documented settings, on both
stores: nothing readable in the stored bytes, the service works as before, and the read models decode
the lean way after decrypting."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

import pytest

from membership.database import ConfigurationError
from projections.engine.catalog import PROJECTIONS
from projections.engine.decoding import ProjectionDecoder
from projections.engine.rebuild import Rebuild
from projections.engine.runner import ProjectionRunner
from service.bootstrap import build_services
from service.settings import Settings
from tests.factories import new_actor
from tests.helpers import busy_team, generation_rows, role_id, table_rows

KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize("compression", ["zlib", "none"])
def test_stored_events_hold_no_readable_personal_data_and_everything_still_works(
    store: str, settings_for: Callable[..., Settings], compression: str
) -> None:
    settings = settings_for(store, MEMBERSHIP_EVENT_CIPHER_KEY=KEY, MEMBERSHIP_EVENT_COMPRESSION=compression)
    services = build_services(settings)
    services.runner = ProjectionRunner(services.organizations, services.read_db)
    try:
        app, owner = services.organizations, new_actor("owner")
        org = app.create_organization(owner, "Secretive").organization_id
        app.invite_member(org, owner, "guest@example.com", role_id(app, org, "Viewer"))
        app.take_snapshot(org)
        services.runner.catch_up()

        assert app.snapshots is not None
        tables = (app.recorder.events_table_name, app.snapshots.recorder.events_table_name)  # type: ignore[attr-defined]
        stored, snapshots = ([bytes(row[0]) for row in table_rows(services, f"SELECT state FROM {t}")] for t in tables)
        assert len(stored) == 3 and len(snapshots) == 1
        for state in stored + snapshots:
            for plain in (owner.email.encode(), b"guest@example.com", b"Secretive", b"timestamp"):
                assert plain not in state
        assert ProjectionDecoder(app.mapper)._lean  # noqa: SLF001 -- decrypted, then decoded the lean way
        members = table_rows(services, "SELECT email FROM {members} WHERE organization_id = %s", str(org))
        assert members == [(owner.email,)]
        assert table_rows(services, "SELECT email FROM {invitations}") == [("guest@example.com",)]
    finally:
        services.close()

    again = build_services(settings)  # another process, same key: reads what the first one wrote
    try:
        assert again.organizations.get_organization(org).name == "Secretive"
    finally:
        again.close()


def test_a_store_written_with_another_key_or_none_is_refused_at_start_in_one_line(
    store: str, settings_for: Callable[..., Settings]
) -> None:
    plain = build_services(settings_for(store))
    plain.organizations.create_organization(new_actor("owner"), "Plain")
    plain.close()
    for env in ({"MEMBERSHIP_EVENT_CIPHER_KEY": KEY}, {"MEMBERSHIP_EVENT_COMPRESSION": "zlib"}):
        with pytest.raises(ConfigurationError, match="the stored events cannot be read with these settings"):
            build_services(settings_for(store, **env))


def test_a_parallel_rebuild_reads_encrypted_compressed_events_and_makes_the_live_tables(
    store: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(store, MEMBERSHIP_EVENT_CIPHER_KEY=KEY, MEMBERSHIP_EVENT_COMPRESSION="zlib")
    services = build_services(settings)
    services.runner = ProjectionRunner(services.organizations, services.read_db)
    try:
        for _ in range(3):
            busy_team(services, size=4)
        services.runner.catch_up()
        live = {name: generation_rows(services, name, 1) for name in PROJECTIONS}
        rebuild = Rebuild(services.organizations, services.read_db, sorted(PROJECTIONS), batch_size=7,
                          retired_grace_s=0, database=settings.database, workers=2, parallel_min_events=0)  # fmt: skip
        assert rebuild.run() == dict.fromkeys(PROJECTIONS, 2)
        assert {name: generation_rows(services, name, 2) for name in PROJECTIONS} == live
    finally:
        services.close()
