"""What every benchmark shares: a throwaway PostgreSQL, the service's settings, seeding, guards against
hangs, the header saying what was measured, percentiles and rates, and the way a benchmark exits.

Nothing here asserts on time: benchmarks print figures and their ratios to a baseline measured in the
same run.
"""

from __future__ import annotations

import _thread
import faulthandler
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import NoReturn, TypeVar
from uuid import UUID, uuid4

from membership.application import Organizations
from membership.database import redact
from membership.inputs import Actor
from membership.organization import Organization, system_role_id
from membership.permissions import VIEWER
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_SCRIPT = ROOT / "scripts" / "pg"
SECRET_KEY = "bench-" + "x" * 40
STALL_SECONDS = 30  # a seeding save of a few thousand events takes well under a second
SEED_RETRIES = 3


# -- a throwaway PostgreSQL ----------------------------------------------------
def start_postgres(stack: ExitStack) -> str:
    """`scripts/pg start` (durability on) in a temporary directory; `stack` stops and removes it. Returns its URL."""
    pg_dir = tempfile.mkdtemp(prefix="membership-bench-pg.")
    stack.callback(shutil.rmtree, pg_dir, ignore_errors=True)
    # A new session: Ctrl-C in the terminal must reach only the benchmark, which then stops the server itself.
    stack.callback(subprocess.run, [str(PG_SCRIPT), "stop", pg_dir], start_new_session=True, check=False)
    print(f"starting a throwaway PostgreSQL (durability on) in {pg_dir} ...", flush=True)
    starting = subprocess.Popen(
        [str(PG_SCRIPT), "start", pg_dir], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = starting.communicate()
    except KeyboardInterrupt:
        starting.communicate()  # let it finish, so that the stop above finds a server to stop
        raise
    if starting.returncode:
        raise SystemExit(f"scripts/pg start failed (exit code {starting.returncode})")
    return out.strip().splitlines()[-1]


def settings_for(url: str, env: Mapping[str, str] | None = None) -> Settings:
    """The service's settings on `url`, with a fixed secret key and `env` (more MEMBERSHIP_* variables) on top."""
    return Settings.from_env({"MEMBERSHIP_DATABASE_URL": url, "MEMBERSHIP_SECRET_KEY": SECRET_KEY, **(env or {})})


def server_settings(app: Organizations) -> dict[str, str]:
    """fsync and friends as the server reports them (so the output says what was measured)."""
    names = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers")
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=False) as cur:
        cur.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),))
        found = {row["name"]: str(row["setting"]) for row in cur.fetchall()}
    return {name: found.get(name, "?") for name in names}


# -- the header: what was measured, where ----------------------------------------
def print_header_line(label: str, text: str) -> None:
    """One line of the aligned header every PostgreSQL benchmark prints first."""
    print(f"{label:<16}{text}")


def database_line(url: str, app: Organizations) -> str:
    return f"{redact(url)}  {server_settings(app)}"


def versions_line(*packages: str) -> str:
    """Python, the given packages' versions, and the machine."""
    parts = [platform.python_version(), *(f"{name} {package_version(name)}" for name in packages)]
    return "  ".join(parts) + f"  {platform.machine()}, {platform.node()}"


def load_average() -> str:
    """Other work on the machine skews every figure: say how busy it was."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg()) + " (1/5/15 min)"


# -- figures ---------------------------------------------------------------------
def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94] if len(values) > 1 else values[0]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


# -- hangs -------------------------------------------------------------------------
class Stalled(Exception):
    """A guarded block made no progress in time (see `stall_guard`)."""


@contextmanager
def stall_guard(seconds: float) -> Iterator[None]:
    """Turn a hang of more than `seconds` into `Stalled`.

    Large `save()`s can hang forever in psycopg 3.3's pipeline mode (the library
    inserts events in a pipeline): when the last flush of a multi-megabyte
    message is partial, `Pipeline.sync()` waits to read results while the server
    still waits for the rest of the message (client polls POLLIN only, backend is
    in ClientRead). Interrupting makes psycopg cancel, then close the connection;
    nothing of the batch was committed.
    """
    fired = threading.Event()
    armed = threading.Lock()

    def fire() -> None:
        if armed.acquire(blocking=False):
            fired.set()
            _thread.interrupt_main()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired.is_set():
            raise Stalled(f"no progress in {seconds:.0f} s") from None
        raise
    finally:
        armed.acquire(blocking=False)  # from now on the timer does nothing
        timer.cancel()


class Watchdog:
    """Turns a hang into a loud, clean exit: past `seconds`, print every thread's stack and SIGTERM ourselves.

    Seen once: `app.save()` of a 10,000-event chunk never returned, the client
    polling inside psycopg's pipeline sync (eventsourcing's insert_events) while the
    server sat in ClientRead mid-INSERT. SIGTERM runs the ExitStack clean-up (see `run`),
    and the benchmark then exits with status 3.
    """

    fired = False

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds, self.what = seconds, what
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        Watchdog.fired = True
        print(f"\nwatchdog: {self.what} took more than {self.seconds:g} s; stacks follow, then exit", file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGTERM)


def run(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's `main` and exit with its status: SIGTERM goes through the same clean-up as Ctrl-C
    (so a throwaway PostgreSQL is always stopped and removed), Ctrl-C exits 130, a fired `Watchdog` 3."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        status = main()
    except KeyboardInterrupt:  # the server is already stopped and removed
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        if Watchdog.fired:
            sys.exit(3)
        raise
    sys.exit(3 if Watchdog.fired else status)


# -- seeding: organizations of N members, through the domain ----------------------
@dataclass
class SeededOrg:
    """One organization seeded by `seed`: an Owner and members who joined by an unlimited Viewer link."""

    size: int
    id: UUID
    owner: Actor
    viewer_role_id: UUID
    version: int = 0
    seed_events: int = 0
    seed_seconds: float = 0.0
    snapshot_seconds: float = 0.0  # the one snapshot taken after seeding


OrgT = TypeVar("OrgT", bound=SeededOrg)


def seed(app: Organizations, size: int, index: int, batch: int, kind: type[OrgT]) -> OrgT:
    """An organization of `size` members (the Owner included), built through the domain; `kind` is the
    record to return (`SeededOrg` or a subclass that also holds a benchmark's measurements).

    Snapshots are suspended while seeding (each batch would otherwise snapshot the
    whole, growing organization) and one is taken at the end, as the service would
    have done at its last interval, so cold loads read a snapshot plus a few events.
    """
    owner = Actor(f"bench-owner-{index}", f"owner{index}@bench.example", f"Owner {index}")
    started = time.perf_counter()
    org_id = app.create_organization(owner, f"Bench org of {size:,} members")
    viewer_role_id = system_role_id(org_id.organization_id, VIEWER.key)
    link_id = app.create_invite_link(org_id.organization_id, owner, viewer_role_id, max_uses=0, expires_in_days=365).id
    assert link_id is not None
    org = kind(size, org_id.organization_id, owner, viewer_role_id)
    to_add = size - 1
    added = 0
    last_print = time.perf_counter()
    retries = 0
    snapshots, app.snapshots = app.snapshots, None  # Organizations._take_snapshots then does nothing
    try:
        while added < to_add:
            count = min(batch, to_add - added)
            try:
                with app.reading(org.id) as live:
                    now = datetime.now(UTC)
                    for j in range(added, added + count):
                        user = Actor(f"bench-{index}-user-{j}", f"user{j}.org{index}@bench.example", f"User {j}")
                        live.redeem_invite_link(user, link_id, uuid4(), now)
                    with stall_guard(STALL_SECONDS):
                        app.save(live)  # one transaction per batch
            except Stalled as stalled:
                retries += 1
                if retries > SEED_RETRIES:
                    raise
                # The live object holds events that were never stored: start again from the stored state.
                assert app.repository.cache is not None
                app.repository.cache.get(org.id, evict=True)
                with app.reading(org.id) as live:
                    added = len(live.members) - 1
                print(f"  seeding {size:>9,}: save stalled ({stalled}; see stall_guard); again from {added + 1:,}")
                continue
            added += count
            if time.perf_counter() - last_print > 2 or added == to_add:
                last_print = time.perf_counter()
                elapsed = last_print - started
                seeding_rate = (added + 3) / elapsed
                print(
                    f"  seeding {size:>9,}: {added + 1:>9,} members  {elapsed:6.1f} s  {seeding_rate:8,.0f} events/s",
                    flush=True,
                )
    finally:
        app.snapshots = snapshots
    org.seed_seconds = time.perf_counter() - started
    with app.reading(org.id) as live:
        assert len(live.members) == size, (len(live.members), size)
        org.version = org.seed_events = live.version
        if app.snapshots is not None and snapshot_interval(app):
            snapping = time.perf_counter()
            app.snapshots.put([live.Snapshot.take(live)])  # what Organizations._take_snapshots does
            org.snapshot_seconds = time.perf_counter() - snapping
    return org


def snapshot_interval(app: Organizations) -> int | None:
    """The interval in force (`snapshot_interval` on the app; the class default otherwise)."""
    if app.snapshots is None:
        return None
    configured = getattr(app, "snapshot_interval", None)
    return int(configured) if configured else app.snapshotting_intervals.get(Organization)
