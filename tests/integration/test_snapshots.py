"""The worker snapshots organizations off the request path; loads from its snapshots equal replays."""

from __future__ import annotations

from membership.application import project_organization
from service.bootstrap import Services
from tests.factories import new_actor
from tests.helpers import role_id
from workers.snapshots import SnapshotTaker


def test_commands_do_not_snapshot_the_worker_does(services: Services) -> None:
    app, owner = services.organizations, new_actor("owner")
    org = app.create_organization(owner, "Big").organization_id
    code = app.create_invite_link(org, owner, role_id(app, org, "Viewer")).secret
    for _ in range(10):
        app.accept_invite_link(new_actor("p"), code)  # versions 4..13
    assert app.snapshots is not None and list(app.snapshots.get(org)) == []  # the request path took none

    taker = SnapshotTaker(app, services.read_db, interval=5)
    assert taker.run_once() == 2
    assert taker.run_once() == 0  # nothing new since

    assert [s.originator_version for s in app.snapshots.get(org)] == [5, 10]
    assert app.organization_at(org, 12) == project_organization(None, list(app.events.get(org))[:12])


def test_two_workers_snapshotting_the_same_version_keep_one(services: Services) -> None:
    app, owner = services.organizations, new_actor("owner")
    org = app.create_organization(owner, "Twice").organization_id
    for n in range(3):
        app.invite_member(org, owner, f"p{n}@example.com", role_id(app, org, "Viewer"))
    first, second = SnapshotTaker(app, services.read_db, interval=5), SnapshotTaker(app, services.read_db, interval=5)
    first.run_once()
    with services.read_db.transaction() as cursor:
        cursor.execute("UPDATE event_cursors SET position = 0 WHERE name = 'snapshots'")  # the second starts over
    second.run_once()
    assert app.snapshots is not None and [s.originator_version for s in app.snapshots.get(org)] == [5]
