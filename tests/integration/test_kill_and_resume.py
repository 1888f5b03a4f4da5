"""A projection worker or a rebuild killed with SIGKILL mid-way, then resumed, ends
with exactly the right tables: no event applied twice, none skipped.

The killed process works one event (or one share's step) per transaction, so that the rest of its
work takes long enough to be cut short; it is killed as soon as it is seen to have made progress.
The resumption runs in this process: all it has to go on is what the killed one left in the database.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from uuid import UUID

import pytest

from projections.engine import tracking
from projections.engine.rebuild import Rebuild
from service.bootstrap import Services
from tests.conftest import TEST_SECRET_KEY
from tests.factories import new_actor
from tests.helpers import busy_team, generation_rows, joined_at_once, table_rows
from tests.servers import MEMBERSHIP

EVENTS = 1000  # at one event per transaction, enough that no kill comes after the end


def crowd(services: Services, size: int) -> tuple[UUID, int]:
    """An organization `size` people joined by link, saved at once (a command each would take seconds);
    returns its id and its last position."""
    app, owner = services.organizations, new_actor("owner")
    organization_id = app.create_organization(owner, "Crowd").organization_id
    _, last = joined_at_once(app, organization_id, owner, [new_actor("p") for _ in range(size)])
    return organization_id, last


def start(store: str, *command: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MEMBERSHIP_DATABASE_URL": store, "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY}
    env["MEMBERSHIP_VAR_DIR"] = tempfile.mkdtemp(prefix="membership-var-")
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def generation(services: Services, name: str, state: str) -> tracking.Generation | None:
    with services.read_db.snapshot() as cursor:
        return next(
            (g for g in tracking.all_generations(services.read_db, cursor) if g.name == name and g.state == state), None
        )


def position(services: Services, name: str, state: str) -> int:
    found = generation(services, name, state)
    return found.position if found is not None else 0


def kill_when(process: subprocess.Popen[bytes], reached: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not reached():
        assert process.poll() is None, f"exited with {process.returncode}"
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_killed_worker_resumes_without_duplicates_or_gaps(services: Services, store: str) -> None:
    _, last = crowd(services, EVENTS)
    worker = start(store, MEMBERSHIP, "worker", "--batch-size", "1")
    kill_when(worker, lambda: 0 < position(services, "audit", "active") < last)
    killed_at = position(services, "audit", "active")
    assert 0 < killed_at < last  # killed mid-way

    services.runner.catch_up()  # type: ignore[union-attr]

    assert all(position(services, name, "active") >= last for name in ("audit", "members", "invitations", "roles"))
    audit = table_rows(services, "SELECT COUNT(*), COUNT(DISTINCT position), MAX(position) FROM {audit_log}")
    assert audit == [(EVENTS + 3, EVENTS + 3, last)]  # created, owner joined, link created, then the joins
    assert table_rows(services, "SELECT COUNT(*) FROM {members}") == [(EVENTS + 1,)]
    assert table_rows(services, "SELECT use_count FROM {invite_links}") == [(EVENTS,)]


# The rebuild the CLI runs, but one event per transaction (the CLI takes at least 100), and with "parallel"
# filled by two processes, one share of the organizations each (the CLI only does so from 100,000 events on).
REBUILD = """
import sys
from service.bootstrap import build_services
from service.settings import Settings
from projections.engine.rebuild import Rebuild
built = build_services(Settings.from_env())
parallel = {"database": built.settings.database, "workers": 2, "parallel_min_events": 0}
Rebuild(
    built.organizations, built.read_db, ["audit", "members"], batch_size=1, **(parallel if sys.argv[1:] else {})
).run()
"""


def test_a_killed_rebuild_resumes_and_equals_the_live_tables(
    services: Services, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, last = crowd(services, EVENTS)
    services.runner.catch_up()  # type: ignore[union-attr]
    live = {name: generation_rows(services, name, 1) for name in ("audit", "members")}
    rebuild = start(store, sys.executable, "-c", REBUILD)
    kill_when(rebuild, lambda: 0 < position(services, "audit", "building") < last)
    assert 0 < position(services, "audit", "building") < last  # killed mid-way...
    assert generation(services, "audit", "active").generation == 1  # type: ignore[union-attr] # ...before the switch

    with caplog.at_level(logging.INFO, logger="projections.engine.rebuild"):
        rebuilt = Rebuild(services.organizations, services.read_db, ["audit", "members"], retired_grace_s=0).run()

    assert "rebuild of 'audit' resumes at position" in caplog.text
    assert rebuilt == {"audit": 2, "members": 2}
    assert {name: generation_rows(services, name, 2) for name in ("audit", "members")} == live
    assert (
        Rebuild(services.organizations, services.read_db, ["audit"], retired_grace_s=0).start_position() == 0
    )  # nothing left building


def share_positions(services: Services, name: str) -> list[int]:
    building = generation(services, name, "building")
    if building is None:
        return []
    with services.read_db.snapshot() as cursor:
        return list(tracking.share_positions(services.read_db, cursor, name, building.generation).values())


@pytest.mark.parametrize("store", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_killed_parallel_rebuild_resumes_its_shares_and_equals_the_live_tables(
    services: Services, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        busy_team(services)  # role changes, removals, a renamed role, a cancelled invitation
    for _ in range(2):  # two crowds: dealt by event counts, one lands in each share
        crowd(services, EVENTS // 3)
    services.runner.catch_up()  # type: ignore[union-attr]
    live = {name: generation_rows(services, name, 1) for name in ("audit", "members")}
    last = services.organizations.recorder.max_notification_id()
    assert last is not None
    rebuild = start(store, sys.executable, "-c", REBUILD, "parallel")
    kill_when(rebuild, lambda: any(0 < position < last for position in share_positions(services, "audit")))
    assert generation(services, "audit", "active").generation == 1  # type: ignore[union-attr]
    killed_at = share_positions(services, "audit")
    assert len(killed_at) == 2 and min(killed_at) < last  # killed mid-fill

    with caplog.at_level(logging.INFO, logger="projections.engine.rebuild"):
        rebuilt = Rebuild(
            services.organizations, services.read_db, ["audit", "members"], retired_grace_s=0,
            database=services.settings.database, workers=2,
        ).run()  # fmt: skip

    assert rebuilt == {"audit": 2, "members": 2}
    assert "filling audit, members with 2 processes" in caplog.text  # the shares were resumed, in parallel
    assert {name: generation_rows(services, name, 2) for name in ("audit", "members")} == live
    assert share_positions(services, "audit") == []
