"""A projection worker or a rebuild killed with SIGKILL mid-way, then restarted, ends
with exactly the right tables: no event applied twice, none skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import pytest

from projections.engine import tracking
from projections.engine.rebuild import Rebuild
from service.bootstrap import Services
from tests.conftest import TEST_SECRET_KEY
from tests.factories import new_actor
from tests.helpers import busy_team, generation_rows, role_id, table_rows
from tests.servers import MEMBERSHIP

EVENTS = 1500


def seed(services: Services) -> int:
    """An organization with EVENTS people who joined by link; returns the last position."""
    app, owner = services.organizations, new_actor("owner")
    org = app.create_organization(owner, "Crowd").organization_id
    code = app.create_invite_link(org, owner, role_id(app, org, "Viewer")).secret
    receipt = None
    for _ in range(EVENTS):
        receipt = app.accept_invite_link(new_actor("p"), code)
    assert receipt is not None and receipt.position is not None
    return receipt.position


def start(store: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MEMBERSHIP_DATABASE_URL": store, "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY}
    env["MEMBERSHIP_VAR_DIR"] = tempfile.mkdtemp(prefix="membership-var-")
    return subprocess.Popen([MEMBERSHIP, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def generation(services: Services, name: str, state: str) -> tracking.Generation | None:
    with services.read_db.snapshot() as cursor:
        return next(
            (g for g in tracking.all_generations(services.read_db, cursor) if g.name == name and g.state == state), None
        )


def kill_when(process: subprocess.Popen[bytes], reached: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not reached():
        assert process.poll() is None, f"exited with {process.returncode}"
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_killed_worker_resumes_without_duplicates_or_gaps(services: Services, store: str) -> None:
    last = seed(services)
    worker = start(store, "worker", "--batch-size", "20")
    kill_when(worker, lambda: 0 < (generation(services, "audit", "active").position or 0) < last)  # type: ignore[union-attr]
    killed_at = generation(services, "audit", "active").position  # type: ignore[union-attr]
    assert killed_at < last

    restarted = start(store, "worker", "--batch-size", "20")
    try:
        kill_when(
            restarted,
            lambda: all(
                generation(services, name, "active").position >= last
                for name in ("audit", "members", "invitations", "roles")
            ),
        )  # type: ignore[union-attr]
    finally:
        restarted.kill()
    audit = table_rows(services, "SELECT COUNT(*), COUNT(DISTINCT position), MAX(position) FROM {audit_log}")
    assert audit == [(EVENTS + 3, EVENTS + 3, last)]  # created, owner joined, link created, then the joins
    assert table_rows(services, "SELECT COUNT(*) FROM {members}") == [(EVENTS + 1,)]
    assert table_rows(services, "SELECT use_count FROM {invite_links}") == [(EVENTS,)]


def test_a_killed_rebuild_resumes_and_equals_the_live_tables(services: Services, store: str) -> None:
    seed(services)
    services.runner.catch_up()
    live = {name: generation_rows(services, name, 1) for name in ("audit", "members")}
    rebuild = start(store, "projections", "rebuild", "audit", "members", "--batch-size", "100")
    kill_when(
        rebuild, lambda: (generation(services, "audit", "building") or tracking.Generation("", 0, "", 0)).position > 300
    )
    assert generation(services, "audit", "active").generation == 1  # type: ignore[union-attr]

    rerun = subprocess.run(
        [MEMBERSHIP, "projections", "rebuild", "audit", "members", "--grace", "0"],
        env={**os.environ, "MEMBERSHIP_DATABASE_URL": store, "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert rerun.returncode == 0, rerun.stderr
    assert "rebuilt: audit (generation 2), members (generation 2)" in rerun.stdout
    assert {name: generation_rows(services, name, 2) for name in ("audit", "members")} == live
    assert (
        Rebuild(services.organizations, services.read_db, ["audit"], retired_grace_s=0).start_position() == 0
    )  # nothing left building


# Rebuild in parallel even for a few events (the CLI only does so from 100,000 events on).
PARALLEL_REBUILD = """
from service.bootstrap import build_services
from service.settings import Settings
from projections.engine.rebuild import Rebuild
built = build_services(Settings.from_env())
Rebuild(
    built.organizations, built.read_db, ["audit", "members"], batch_size=20, database=built.settings.database,
    workers=2, parallel_min_events=0,
).run()
"""


def share_positions(services: Services, name: str) -> list[int]:
    building = generation(services, name, "building")
    if building is None:
        return []
    with services.read_db.snapshot() as cursor:
        return list(tracking.share_positions(services.read_db, cursor, name, building.generation).values())


@pytest.mark.parametrize("store", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_killed_parallel_rebuild_resumes_its_shares_and_equals_the_live_tables(
    services: Services, store: str
) -> None:
    for _ in range(6):  # organizations in both shares
        busy_team(services, size=120)
    services.runner.catch_up()
    live = {name: generation_rows(services, name, 1) for name in ("audit", "members")}
    last = services.organizations.recorder.max_notification_id()
    assert last is not None
    env = {**os.environ, "MEMBERSHIP_DATABASE_URL": store, "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY}
    env["MEMBERSHIP_VAR_DIR"] = tempfile.mkdtemp(prefix="membership-var-")
    rebuild = subprocess.Popen(
        [sys.executable, "-c", PARALLEL_REBUILD], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    kill_when(rebuild, lambda: any(0 < position < last for position in share_positions(services, "audit")))
    assert generation(services, "audit", "active").generation == 1  # type: ignore[union-attr]
    assert len(share_positions(services, "audit")) == 2

    rerun = subprocess.run(
        [MEMBERSHIP, "projections", "rebuild", "audit", "members", "--grace", "0", "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert rerun.returncode == 0, rerun.stderr
    assert "rebuilt: audit (generation 2), members (generation 2)" in rerun.stdout
    assert "filling audit, members with 2 processes" in rerun.stderr  # the shares were resumed, in parallel
    assert {name: generation_rows(services, name, 2) for name in ("audit", "members")} == live
    assert share_positions(services, "audit") == []
