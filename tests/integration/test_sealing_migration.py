"""The one-off migration of events stored before personal data was sealed (`membership privacy seal-events`).

A store written by a version that kept addresses and names in the clear is sealed in place, on both stores:
every such event decodes to the same event afterwards, the organization replays to the same state, nothing
of the plaintext is left in the events, snapshots (state in the clear) are gone, a second run finds nothing
to do, and an erasure then reaches the people of the old events too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any
from uuid import UUID, uuid4

from click.testing import CliRunner

from membership import Organization
from service.bootstrap import build_organizations, build_services
from service.cli import main
from service.privacy import seal_stored_events
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.factories import new_actor
from tests.helpers import role_id
from workers.snapshots import SnapshotTaker


def raw_events(services: Any) -> bytes:
    table = services.organizations.recorder.events_table_name
    with services.read_db.snapshot() as cursor:
        cursor.execute(f"SELECT state FROM {table}")  # noqa: S608
        return b"\n".join(bytes(row[0]) for row in cursor.fetchall())


def state_of(org: Organization) -> tuple[Any, ...]:
    return (org.version, org.name, dict(org.members), dict(org.invitations), dict(org.roles))


def test_plain_events_are_sealed_in_place_and_read_the_same(store: str, settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(store)
    old = build_organizations(settings, personal_keys=None)  # as the version before sealing wrote them
    owner = new_actor("owner")
    # A name with a space and a dot: base64 ciphertext never holds one (a bare "Pat" did, by chance, in CI).
    pat = replace(new_actor("pat"), name="Pat Q. Plain")
    org = old.create_organization(owner, "Plain Labs").organization_id
    old.accept_invitation(pat, old.invite_member(org, owner, pat.email, role_id(old, org, "Viewer")).secret)
    old.invite_member(org, owner, "sam@example.com", role_id(old, org, "Viewer"))
    old.close()

    services = build_services(settings)
    try:
        assert pat.email.encode() in raw_events(services)
        before = state_of(services.organizations.get_organization(org))
        SnapshotTaker(services.organizations, services.read_db, interval=2).run_once()
        assert services.organizations.snapshots is not None and list(services.organizations.snapshots.get(org))

        report = seal_stored_events(services, batch_size=2)

        assert (report.events, report.sealed, report.changed_meanwhile) == (5, 5, 0)
        assert report.snapshots_deleted >= 1 and list(services.organizations.snapshots.get(org)) == []
        stored = raw_events(services)
        for text in (pat.email, owner.email, pat.name, "sam@example.com"):
            assert text.encode() not in stored
        assert seal_stored_events(services).sealed == 0  # nothing left to do
    finally:
        services.close()

    fresh = build_services(settings)
    try:
        assert state_of(fresh.organizations.get_organization(org)) == before
        fresh.erase_person("dpo", email_address=pat.email)
        after = fresh.organizations.organization_at(UUID(str(org)), 4)  # before the erasure, read now
        assert pat.user_id in {m.user_id for m in after.members.values()}
        (erased,) = [m for m in after.members.values() if m.user_id == pat.user_id]
        assert erased.email.endswith("@erased.invalid") and erased.name.startswith("erased member ")
    finally:
        fresh.close()


def test_the_command_reports_what_it_sealed(store: str, settings_for: Callable[..., Settings], tmp_path: Any) -> None:
    settings = settings_for(store)
    old = build_organizations(settings, personal_keys=None)
    old.create_organization(new_actor("owner"), "Plain Co")
    old.close()
    env = {"MEMBERSHIP_DATABASE_URL": store, "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
           "MEMBERSHIP_VAR_DIR": str(settings.database.var_dir)}  # fmt: skip
    result = CliRunner().invoke(main, ["privacy", "seal-events"], env=env)
    assert result.exit_code == 0, result.output
    assert '"sealed": 2' in result.stdout  # Created and the Owner's MemberJoined


def test_one_save_of_many_new_people_seals_each_with_a_key_of_their_own(
    store: str, settings_for: Callable[..., Settings]
) -> None:
    """Their keys are made together before the save (PersonalKeys.prepare); each reads back in another process."""
    settings = settings_for(store)
    services = build_services(settings)
    try:
        app, owner = services.organizations, new_actor("owner")
        org = app.create_organization(owner, "Crowd").organization_id
        link = app.create_invite_link(org, owner, role_id(app, org, "Viewer")).id
        people = [new_actor(f"p{n}") for n in range(30)]
        with app.reading(org) as live:
            for person in people:
                live.redeem_invite_link(person, link, uuid4(), app.clock())
            app.save(live)
        assert app.personal_keys is not None
        assert {key.address for p in people for key in app.personal_keys.find(email=p.email)} == {p.email for p in people}
        assert all(p.email.encode() not in raw_events(services) for p in people)
    finally:
        services.close()
    fresh = build_services(settings)
    try:
        members = fresh.organizations.get_organization(org).members.values()
        assert {(m.email, m.name) for m in members} >= {(p.email, p.name) for p in people}
    finally:
        fresh.close()
