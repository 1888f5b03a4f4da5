"""The worker snapshots organizations off the request path; loads from its snapshots equal replays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from membership.application import project_organization
from service.bootstrap import Services
from service.snapshot_process import SnapshotProcess
from tests.conftest import EMBEDDED_STORE_ONLY, TEST_SECRET_KEY
from tests.factories import new_actor
from tests.helpers import role_id
from workers.snapshots import SnapshotTaker


def test_commands_do_not_snapshot_the_worker_takes_the_latest_multiple_each_organization_reached(
    services: Services,
) -> None:
    app, owner = services.organizations, new_actor("owner")
    org = app.create_organization(owner, "Big").organization_id
    code = app.create_invite_link(org, owner, role_id(app, org, "Viewer")).secret
    for _ in range(10):
        app.accept_invite_link(new_actor("p"), code)  # versions 4..13
    small = app.create_organization(owner, "Small").organization_id
    for n in range(3):
        app.invite_member(small, owner, f"p{n}@example.com", role_id(app, small, "Viewer"))  # versions 2..5
    assert app.snapshots is not None and list(app.snapshots.get(org)) == []  # the request path took none

    taker = SnapshotTaker(app, services.read_db, interval=5)
    assert taker.run_once() == 2
    assert taker.run_once() == 0  # nothing new since

    # Version 5 of the big one is passed over: a snapshot older than another is never loaded.
    assert [s.originator_version for s in app.snapshots.get(org)] == [10]
    assert [s.originator_version for s in app.snapshots.get(small)] == [5]
    assert app.organization_at(org, 12) == project_organization(None, list(app.events.get(org))[:12])
    assert app.organization_at(org, 7) == project_organization(None, list(app.events.get(org))[:7])


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


def test_served_processes_take_snapshots_in_a_child_process_started_again_if_it_dies(services: Services) -> None:
    app, owner = services.organizations, new_actor("owner")
    child = SnapshotProcess(services.settings)
    taker = SnapshotTaker(app, services.read_db, interval=5, take=child.take)
    org = app.create_organization(owner, "Big").organization_id
    assert taker.run_once() == 0 and child.pid is None  # started only once a snapshot is due
    code = app.create_invite_link(org, owner, role_id(app, org, "Viewer")).secret
    for _ in range(10):
        app.accept_invite_link(new_actor("p"), code)  # versions 4..13
    try:
        assert taker.run_once() == 1
        first = child.pid
        assert first is not None and first != os.getpid()
        os.kill(first, signal.SIGKILL)
        for _ in range(2):
            app.accept_invite_link(new_actor("p"), code)  # versions 14, 15

        assert taker.run_once() == 1
        assert child.pid not in (None, first)
    finally:
        child.close()
    assert child.pid is None
    with pytest.raises(RuntimeError, match="closed"):
        child.take(org, 20)  # a round still running while the service closes starts no new child
    assert child.pid is None
    assert app.snapshots is not None and [s.originator_version for s in app.snapshots.get(org)] == [10, 15]
    assert app.organization_at(org, 15) == project_organization(None, list(app.events.get(org))[:15])


ORPHAN_CHECK = """
import os, sys
from service.settings import Settings
from service.snapshot_process import SnapshotProcess
child = SnapshotProcess(Settings.from_env())
try:
    child.take("00000000-0000-0000-0000-000000000000", 5)  # no such organization: refused, but the child runs
except RuntimeError:
    pass
print(child.pid, flush=True)
os._exit(0)  # no close(): as a killed server would leave it
"""


@EMBEDDED_STORE_ONLY
def test_the_snapshot_process_ends_when_the_process_that_started_it_ends(services: Services) -> None:
    settings = services.settings
    env = {**os.environ, "MEMBERSHIP_DATABASE_URL": settings.database.url,
           "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", ORPHAN_CHECK], env=env, capture_output=True, text=True, timeout=60)
    pid = int(done.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has ended (its parent, init, reaps it)
    except FileNotFoundError:
        return False


def test_the_worker_keeps_the_latest_two_snapshots_of_an_organization(services: Services) -> None:
    app, owner = services.organizations, new_actor("owner")
    org = app.create_organization(owner, "Growing").organization_id
    other = app.create_organization(owner, "Other").organization_id
    code = app.create_invite_link(org, owner, role_id(app, org, "Viewer")).secret
    taker = SnapshotTaker(app, services.read_db, interval=5)
    for round_ in range(4):  # 5 events a round for each: one new multiple of 5 each round
        for _ in range(5):
            app.accept_invite_link(new_actor("p"), code)
        for n in range(5):
            app.invite_member(other, owner, f"p{n}.{round_}@example.com", role_id(app, other, "Viewer"))
        taker.run_once()
    assert app.snapshots is not None
    assert [s.originator_version for s in app.snapshots.get(org)] == [15, 20]
    assert [s.originator_version for s in app.snapshots.get(other)] == [15, 20]
    app.repository.cache.get(org, evict=True)  # type: ignore[union-attr]
    assert app.get_organization(org) == project_organization(None, list(app.events.get(org)))
