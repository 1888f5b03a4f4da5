"""Read-side benchmark: how fast do the read models catch up, rebuild and show a command's effect?

    .venv/bin/python scripts/bench_projections.py                      # 1,000,000 events
    .venv/bin/python scripts/bench_projections.py --events 200000 --profile-events 0
    .venv/bin/python scripts/bench_projections.py --database-url postgresql://...   # an existing, empty database

Seeds the event store on PostgreSQL with realistic organizations (invitations
accepted, cancelled and resent, joins by link, role changes, removals,
departures, custom roles), built through the domain with explicit times and
saved many organizations per transaction. No projection runs while seeding.
Then, in one process, it measures (all in events/s unless noted):

  1. raw read of the event store (`select_notifications`, 5,000 per call), without
     and with decoding to domain events -- the latter is the baseline of the ratios;
  2. the eventsourcing library's own `ProjectionRunner` (one transaction per event)
     over the first --sample events, with a trivial view of one row per event;
  3. the service's live runner catching up in batches (projections.runner) over the
     first --catch-up-events, and the full blue/green rebuild of every projection
     (projections.rebuild, as `membership projections rebuild` runs it: one process
     per CPU up to 4, each filling one share of the organizations) with its phases.
     Its rate is counted until the last projection is switched (the new tables are
     live); the end-to-end figure adds the readers' grace period it then sleeps
     (5 s, idle) and the drop of the old tables;
  4. command-to-visible latency: `invite_member` then `projections.store.wait_for`
     with the live projection runner in a background thread (LISTEN/NOTIFY and the
     in-process wake-up), without the mailer and job runner.

Then (unless --profile-events 0) a rebuild of the first --profile-events events runs
in this one process under cProfile, with a cost breakdown, and each projection is
rebuilt alone over the same events without the profiler, to show where rebuild time
goes (single-process figures: the parallel fill runs the same code per share). The 1,000,000-event
default takes about 8 minutes on 2 vCPUs.

Without --database-url a throwaway PostgreSQL server is started with
`scripts/pg start` (durability on: fsync, synchronous commit) and removed at exit.

Figures only: nothing here asserts on time. The exit code is 0 unless something fails.
"""

from __future__ import annotations

import argparse
import cProfile
import faulthandler
import gc
import io
import os
import platform
import pstats
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from bench_write import server_settings, start_postgres  # scripts/ is on sys.path when run as a script
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection as LibraryProjection
from eventsourcing.projection import ProjectionRunner as LibraryProjectionRunner
from psycopg.sql import SQL, Identifier

from api.bootstrap import Services, build_services
from membership import exceptions as err
from membership.application import Organizations
from membership.domain import Actor, Organization, system_role_id
from membership.permissions import ADMIN, DEVELOPER, VIEWER
from membership.settings import Settings, redact
from membership.tokens import new_nonce
from projections import tracking
from projections.catalog import PROJECTIONS
from projections.rebuild import Rebuild, default_workers
from projections.runner import ProjectionRunner
from projections.store import wait_for

ROOT = Path(__file__).resolve().parent.parent
READ_BATCH = 5000
REBUILD_TARGET_RATE = 20_000  # events/s
REBUILD_TARGET_RATIO = 0.40  # of the raw read-and-decode rate
LATENCY_TARGET_MS = 15.0  # median, command to visible
SEED_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def last_position(app: Organizations) -> int:
    return app.recorder.max_notification_id() or 0


class Watchdog:
    """Turns a hang into a loud, clean exit: past `seconds`, print every thread's stack and SIGTERM ourselves.

    Seen once here: `app.save()` of a 10,000-event chunk never returned, the client
    polling inside psycopg's pipeline sync (eventsourcing's insert_events) while the
    server sat in ClientRead mid-INSERT. SIGTERM runs the ExitStack clean-up.
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


# -- seeding -------------------------------------------------------------------
@dataclass
class SeededOrg:
    """What the latency phase needs to send commands to a seeded organization."""

    id: UUID
    owner: Actor
    viewer_role_id: UUID


def owner_of(index: int) -> Actor:
    return Actor(f"owner-{index}", f"owner{index}@org{index}.bench.example", f"Owner {index}")


def organization_events(index: int, target_events: int, rng: random.Random) -> Iterator[Organization]:
    """One organization reaching `target_events` events (at least 2) through its commands, in memory.

    Yields the organization after each new event (the first time after the two of its
    creation), so that the caller can interleave many organizations in the log. The mix
    after set-up: ~30% invitations, ~22% acceptances, ~20% joins by link, ~14% role
    changes, ~5% removals, ~4% cancellations, ~2% departures, ~2% resends, ~1% role
    edits; an invitation found expired when it would be accepted is re-sent as a replacement.
    """
    now = SEED_EPOCH + timedelta(minutes=index)

    def tick() -> datetime:
        nonlocal now
        now += timedelta(seconds=rng.randint(30, 900))
        return now

    org_id = uuid4()
    owner = owner_of(index)
    org = Organization.create(org_id, f"Bench organization {index}", owner, uuid4(), now)
    yield org
    admin, developer, viewer = (system_role_id(org_id, role.key) for role in (ADMIN, DEVELOPER, VIEWER))
    roles = [admin, developer, viewer]
    custom: list[UUID] = []
    permission_sets = [["view:members", "view:projects"], ["manage:projects", "manage:deployments"], ["view:billing"]]
    for k in range(rng.randint(1, 3)):
        if org.version >= target_events:
            return
        role_id = uuid4()
        org.create_role(owner, role_id, f"Custom role {k}", "Made by the benchmark", permission_sets[k], tick())
        roles.append(role_id)
        custom.append(role_id)
        yield org
    if org.version >= target_events:
        return
    link_id = uuid4()
    org.create_invite_link(owner, link_id, viewer, new_nonce(), tick(), 0, 365)
    yield org
    members: list[tuple[UUID, Actor]] = []
    pending: list[tuple[UUID, Actor]] = []
    serial = 0

    def new_user() -> Actor:
        nonlocal serial
        serial += 1
        return Actor(f"user-{index}-{serial}", f"user{serial}@org{index}.bench.example", f"User {serial}")

    while org.version < target_events:
        version = org.version
        r = rng.random()
        try:
            if r < 0.30 or (r < 0.56 and not pending):
                user = new_user()
                invitation_id = uuid4()
                role = rng.choice(roles[1:])
                org.invite_member(owner, invitation_id, user.email, role, new_nonce(), tick(), 7, 10**6)
                pending.append((invitation_id, user))
            elif r < 0.52:
                invitation_id, user = pending.pop(0)
                at = tick()
                if at >= org.invitations[str(invitation_id)]["expires_at"]:  # expired: invite again (a replacement)
                    replacement = uuid4()
                    role = UUID(org.invitations[str(invitation_id)]["role_id"])
                    org.invite_member(owner, replacement, user.email, role, new_nonce(), at, 7, 10**6)
                    pending.append((replacement, user))
                else:
                    member_id = uuid4()
                    org.accept_invitation(user, invitation_id, member_id, at)
                    members.append((member_id, user))
            elif r < 0.56:
                invitation_id, _ = pending.pop(rng.randrange(len(pending)))
                org.cancel_invitation(owner, invitation_id, tick())
            elif r < 0.76:
                user = new_user()
                member_id = uuid4()
                org.redeem_invite_link(user, link_id, member_id, tick())
                members.append((member_id, user))
            elif r < 0.90 and members:
                member_id, _ = rng.choice(members)
                org.change_role(owner, member_id, rng.choice(roles[1:]), tick())
            elif r < 0.95 and members:
                member_id, _ = members.pop(rng.randrange(len(members)))
                org.remove_member(owner, member_id, tick())
            elif r < 0.97 and members:
                _, user = members.pop(rng.randrange(len(members)))
                org.leave(user, tick())
            elif r < 0.99 and pending:
                invitation_id, _ = rng.choice(pending)
                org.resend_invitation(owner, invitation_id, new_nonce(), tick())
            elif custom:
                org.update_role(owner, rng.choice(custom), tick(), description=f"Revision {org.version}")
        except err.MembershipError:
            pass  # the domain said no (e.g. the role is already that one): nothing was recorded
        if org.version > version:
            yield org


def seed(
    app: Organizations, total: int, per_org: int, chunk_events: int, active: int, rng: random.Random
) -> list[SeededOrg]:
    """`total` events in organizations of about `per_org` events, `active` of them growing at a time.

    Each transaction (`app.save(*organizations)`) holds ~`chunk_events` events: a random
    run of events from each active organization, so organizations interleave in the log
    as they do when many are in use at once.
    """
    print(
        f"seeding {total:,} events: organizations of ~{per_org} events, {active} growing at a time, "
        f"~{chunk_events:,} events per transaction"
    )
    seeded: list[SeededOrg] = []
    kinds: Counter[str] = Counter()
    made = planned = 0
    build_seconds = save_seconds = 0.0
    pool: list[tuple[Iterator[Organization], Organization]] = []
    started = last_print = time.perf_counter()
    while made < total:
        building = time.perf_counter()
        while len(pool) < active and planned < total:
            target = rng.randint(per_org * 4 // 5, per_org * 6 // 5)
            if total - planned - target < 2:  # the last organization takes the rest
                target = total - planned
            events = organization_events(len(seeded), target, rng)
            org = next(events)
            seeded.append(SeededOrg(org.id, owner_of(len(seeded)), system_role_id(org.id, VIEWER.key)))
            pool.append((events, org))
            planned += target
        share = max(1, chunk_events // len(pool))
        growing = []
        for events, org in pool:
            for _ in range(rng.randint(1, 2 * share)):
                if next(events, None) is None:
                    break
            else:
                growing.append((events, org))
        chunk = [org for _, org in pool]
        chunk_size = sum(len(org.pending_events) for org in chunk)
        kinds.update(type(e).__name__ for org in chunk for e in org.pending_events)
        saving = time.perf_counter()
        build_seconds += saving - building
        with Watchdog(120, f"app.save() of {len(chunk)} organizations ({chunk_size:,} events)"):
            app.save(*chunk)  # one transaction (plus snapshots where a version crosses the interval)
        save_seconds += time.perf_counter() - saving
        made += chunk_size
        pool = growing
        now = time.perf_counter()
        if now - last_print > 10 or made >= total:
            last_print = now
            print(
                f"  {made:>10,} events  {len(seeded):>6,} orgs  {now - started:6.1f} s  "
                f"{made / (now - started):8,.0f} events/s",
                flush=True,
            )
    elapsed = time.perf_counter() - started
    print(
        f"seeded {made:,} events in {len(seeded):,} organizations in {elapsed:.1f} s ({made / elapsed:,.0f} events/s; "
        f"commands in memory {build_seconds:.1f} s, app.save() {save_seconds:.1f} s)"
    )
    print("event mix: " + ", ".join(f"{name} {count / made:.1%}" for name, count in kinds.most_common()))
    return seeded


# -- 1. raw read ---------------------------------------------------------------
def read_all(app: Organizations, decode: bool, upto: int | None = None) -> tuple[int, float]:
    """Reads (and decodes) every notification; returns (count, seconds)."""
    recorder, mapper = app.recorder, app.mapper
    count, position = 0, 0
    started = time.perf_counter()
    while notifications := recorder.select_notifications(start=position + 1, limit=READ_BATCH, stop=upto):
        if decode:
            for notification in notifications:
                mapper.to_domain_event(notification)
        count += len(notifications)
        position = notifications[-1].id
    return count, time.perf_counter() - started


# -- 2. the library's ProjectionRunner ----------------------------------------
class LibraryBenchView(PostgresTrackingRecorder):
    """A trivial materialised view: one row per event, written with its tracking row in one transaction."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        self.rows_table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(f"{prefix}_rows"))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, organization_id text NOT NULL, "
                "event_type text NOT NULL, occurred_at timestamptz NOT NULL)"
            ).format(self.rows_table)
        )
        self.insert_row = SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(self.rows_table)

    def record(self, event: Any, tracking_: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                self.insert_row,
                (tracking_.notification_id, str(event.originator_id), type(event).__name__, event.timestamp),
                prepare=True,
            )
            self._insert_tracking(cursor, tracking_)


class LibraryBenchProjection(LibraryProjection[LibraryBenchView]):
    """Counts what it has processed; the runner builds it, so the goal is set on the class."""

    name = "bench_library"
    goal = 0
    processed = 0
    first_started: float | None = None
    goal_reached_at: float | None = None
    reached = threading.Event()

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:  # type: ignore[override]
        cls = type(self)
        if cls.first_started is None:
            cls.first_started = time.perf_counter()
        self.view.record(domain_event, tracking)
        cls.processed += 1
        if cls.processed == cls.goal:
            cls.goal_reached_at = time.perf_counter()
            cls.reached.set()


def library_runner_rate(settings: Settings, sample: int) -> tuple[int, float]:
    """eventsourcing.projection.ProjectionRunner from position 0 until `sample` events are committed."""
    cls = LibraryBenchProjection
    cls.goal, cls.processed, cls.first_started, cls.goal_reached_at = sample, 0, None, None
    cls.reached.clear()
    env = settings.eventsourcing_env()
    timeout = 60 + sample / 50
    with LibraryProjectionRunner(
        application_class=Organizations, projection_class=LibraryBenchProjection, view_class=LibraryBenchView, env=env
    ) as runner:
        if not cls.reached.wait(timeout):
            runner.run_forever(timeout=0.01)  # re-raises the runner's error, if any
            raise RuntimeError(f"the library runner processed only {cls.processed} events in {timeout:.0f} s")
        view = runner.view
    assert cls.first_started is not None and cls.goal_reached_at is not None
    with view.datastore.transaction(commit=True) as cursor:  # leave no trace in the database
        cursor.execute(SQL("DROP TABLE IF EXISTS {}").format(view.rows_table))
        cursor.execute(
            SQL("DROP TABLE IF EXISTS {}.{}").format(
                Identifier(view.datastore.schema), Identifier(view.tracking_table_name)
            )
        )
    view.datastore.close()
    return sample, cls.goal_reached_at - cls.first_started


# -- 3. live catch-up and rebuild ----------------------------------------------
class Progress:
    """Prints progress at most every few seconds."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.done = 0
        self.started = self.last = time.perf_counter()

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.last > 5:
            self.last = now
            rate = self.done / (now - self.started)
            print(f"  {self.label}: {self.done:>10,} / {self.total:,} events  {rate:8,.0f} events/s", flush=True)


def live_catch_up(services: Services, events: int) -> tuple[int, float]:
    """The service's runner (default batch size) from the empty generation 1 over the first `events` events.

    Its rate does not drift over the log (measured over all of 1,000,000: 3,100-3,400 events/s
    throughout), so a part of it is enough; the full rebuild that follows starts from 0 anyway.
    """
    runner = ProjectionRunner(services.organizations, services.read_db)
    progress = Progress("live catch-up", events)
    count = 0
    started = time.perf_counter()
    while count < events and (read := runner.run_once()):
        count += read
        progress(read)
    elapsed = time.perf_counter() - started
    if runner.broken:
        raise RuntimeError(f"live runner broken: {runner.broken}")
    return count, elapsed


class TimedRebuild(Rebuild):
    """Rebuild, timing its phases: preparing the tables, filling them, and switching each projection."""

    PREPARE, PARALLEL = "prepare (create tables)", "parallel fill (one process per share, PostgreSQL)"
    FILL, INDEXES = "fill in this process (read, decode, apply in batches)", "create the secondary indexes"
    SWITCH = "switch projections (catch up under lock, make active)"
    GRACE, DROP = "after the switch: the reader grace period (sleeping)", "after the switch: drop the old generation"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phases: dict[str, float] = dict.fromkeys(
            (self.PREPARE, self.PARALLEL, self.FILL, self.INDEXES, self.SWITCH, self.GRACE, self.DROP), 0.0
        )
        self.switched_at = 0.0

    @contextmanager
    def _timing(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] += time.perf_counter() - started

    def _prepare(self, name: str, restart: bool) -> Any:
        with self._timing(self.PREPARE):
            return super()._prepare(name, restart)

    def _fill_in_parallel(self, builds: list[Any]) -> None:
        with self._timing(self.PARALLEL):
            super()._fill_in_parallel(builds)

    def _step(self, builds: list[Any]) -> bool:
        with self._timing(self.FILL):
            return super()._step(builds)

    def _create_indexes(self, builds: list[Any]) -> None:
        with self._timing(self.INDEXES):
            super()._create_indexes(builds)

    def _switch(self, build: Any) -> bool:
        with self._timing(self.SWITCH):
            switched = super()._switch(build)
        self.switched_at = time.perf_counter()
        return switched


def full_rebuild(services: Services, events: int) -> tuple[float, float, dict[str, int], dict[str, float]]:
    """Rebuild.run() as `membership projections rebuild` runs it: fill a new generation of every projection
    (in parallel on PostgreSQL), catch up, switch, sleep the grace period, drop the old one.

    Returns (seconds until the last projection switched, seconds end to end, generations, phases).
    """
    progress = Progress("rebuild", events)
    rebuild = TimedRebuild(
        services.organizations, services.read_db, list(PROJECTIONS), batch_size=READ_BATCH, on_progress=progress,
        settings=services.settings, workers=default_workers(),
    )  # fmt: skip
    started = time.perf_counter()
    generations = rebuild.run()
    ended = time.perf_counter()
    rebuild.phases[rebuild.GRACE] = rebuild.retired_grace_s  # slept once, after the last switch
    rebuild.phases[rebuild.DROP] = ended - rebuild.switched_at - rebuild.retired_grace_s
    return rebuild.switched_at - started, ended - started, generations, dict(rebuild.phases)


def partial_rebuild(services: Services, names: list[str], events: int, profiler: cProfile.Profile | None) -> float:
    """Rebuilds `names` over the first `events` events into a scratch generation, then drops it; returns seconds.

    Uses Rebuild's own steps (the same code path as a full rebuild) but stops early and never switches.
    """
    db = services.read_db
    rebuild = Rebuild(services.organizations, db, names, batch_size=READ_BATCH)
    builds = [rebuild._prepare(name, restart=True) for name in rebuild.names]
    try:
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        while min(build.position for build in builds) < events and rebuild._step(builds):
            pass
        if profiler is not None:
            profiler.disable()
        return time.perf_counter() - started
    finally:
        with db.transaction() as cursor:
            for build in builds:
                build.projection.drop_tables(cursor)
                tracking.delete_generation(db, cursor, build.name, build.projection.generation)


# -- 4. command-to-visible latency ----------------------------------------------
@dataclass
class Latency:
    command: list[float] = field(default_factory=list)
    wait: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)


def measure_latency(services: Services, orgs: list[SeededOrg], commands: int, warmup: int) -> Latency:
    """invite_member, then wait_for its position: t0 before the command, t1 when the read models show it."""
    app, db = services.organizations, services.read_db
    # Only the projection runner: Services.start_projections() now also starts the invitation mailer and
    # the bulk-job runner, and the mailer would first ingest every seeded invitation (and record an event
    # for each e-mail), which is a backlog, not the steady state measured here.
    services.runner = ProjectionRunner(app, db)
    services.runner.start()
    result = Latency()
    for n in range(warmup + commands):
        org = orgs[n % len(orgs)]
        email = f"latency{n}@bench.example"
        with Watchdog(30, "one invite_member + wait_for"):
            t0 = time.perf_counter()
            receipt = app.invite_member(org.id, org.owner, email, org.viewer_role_id)
            t_command = time.perf_counter()
            wait_for(db, receipt.position)
            t1 = time.perf_counter()
        if n >= warmup:
            result.command.append(t_command - t0)
            result.wait.append(t1 - t_command)
            result.total.append(t1 - t0)
    assert services.runner is not None
    if services.runner.broken:
        raise RuntimeError(f"live runner broken: {services.runner.broken}")
    return result


# -- profiling -------------------------------------------------------------------
def bucket(filename: str) -> str:
    if "/psycopg" in filename:
        return "psycopg (client side, incl. waiting for the server)"
    if filename == "~":
        return "C functions and builtins (json/psycopg C code, str(), dict ops, ...)"
    if "/eventsourcing/" in filename or "json/" in filename:
        return "decoding (eventsourcing mapper, json, uuid, datetime)"
    if "/projections/" in filename:
        return "projection handlers and runner (projections/*.py)"
    if "uuid.py" in filename or "datetime" in filename:
        return "decoding (eventsourcing mapper, json, uuid, datetime)"
    return "other Python (functools dispatch, stdlib)"


def profile_report(profiler: cProfile.Profile, events: int, seconds: float) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total_tt = sum(v[2] for v in raw.values()) or 1.0
    buckets: dict[str, float] = defaultdict(float)
    calls: Counter[str] = Counter()
    for (filename, _, name), (_, ncalls, tt, _, _) in raw.items():
        buckets[bucket(filename)] += tt
        if "/psycopg/" in filename and name in ("execute", "executemany") and filename.endswith("cursor.py"):
            calls[name] += ncalls
        if name == "to_domain_event":
            calls["to_domain_event"] += ncalls
        if name == "select_notifications" and "/eventsourcing/" in filename:
            calls["select_notifications"] += ncalls
    out.write(
        f"profiled rebuild of {events:,} events: {seconds:.1f} s under cProfile ({events / seconds:,.0f} events/s)\n"
    )
    out.write("own time by area:\n")
    for name, tt in sorted(buckets.items(), key=lambda item: -item[1]):
        out.write(f"  {tt:7.2f} s  {tt / total_tt:6.1%}  {tt / events * 1e6:6.1f} us/event  {name}\n")
    out.write(
        f"statements: cursor.execute {calls['execute']:,} ({calls['execute'] / events:.2f} per event), "
        f"executemany {calls['executemany']:,}; to_domain_event {calls['to_domain_event']:,}; "
        f"select_notifications {calls['select_notifications']:,}\n"
    )
    out.write("--- top 25 by own time\n")
    stats.sort_stats("tottime").print_stats(25)
    out.write("--- top 30 by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(30)
    text = out.getvalue()
    return "\n".join(line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/", "") for line in text.splitlines())


# -- reporting -------------------------------------------------------------------
def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94] if len(values) > 1 else values[0]


def load_average() -> str:
    """Other work on the machine skews every figure: say how busy it was."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg()) + " (1/5/15 min)"


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def timed(label: str, action: Callable[[], tuple[int, float]]) -> tuple[int, float]:
    print(f"{label} ...", flush=True)
    count, seconds = action()
    print(f"  {count:,} events in {seconds:.2f} s = {rate(count, seconds):,.0f} events/s", flush=True)
    return count, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL to use (use an empty database: the read models are rebuilt over all its events).\n"
        "Default: a throwaway server from scripts/pg (durability on), removed at exit.",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events to seed (default: 1000000)")
    parser.add_argument(
        "--events-per-org", type=int, default=500, help="average events per organization (default: 500)"
    )
    parser.add_argument("--seed-batch", type=int, default=5_000, help="seeding: events per transaction (default: 5000)")
    parser.add_argument(
        "--active-orgs", type=int, default=100, help="seeding: organizations growing at a time (default: 100)"
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=3000,
        help="events for the library's one-transaction-per-event runner (default: 3000)",
    )
    parser.add_argument("--latency-commands", type=int, default=200, help="measured commands (default: 200)")
    parser.add_argument("--latency-warmup", type=int, default=20, help="unmeasured commands first (default: 20)")
    parser.add_argument(
        "--catch-up-events",
        type=int,
        default=250_000,
        help="the live runner's batched catch-up over the first N events (default: 250000; 0: skip)",
    )
    parser.add_argument(
        "--profile-events",
        type=int,
        default=100_000,
        help="profile a rebuild of the first N events, and rebuild each projection alone over them\n"
        "(default: 100000; 0: skip)",
    )
    parser.add_argument("--random-seed", type=int, default=42, help="seed of the event mix (default: 42)")
    args = parser.parse_args(argv)
    if args.events < 2 or args.sample < 1 or args.latency_commands < 2 or args.events_per_org < 10:
        parser.error("need --events >= 2, --sample >= 1, --latency-commands >= 2, --events-per-org >= 10")

    # SIGTERM exits through the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wall = time.perf_counter()
    with ExitStack() as stack:
        url = args.database_url or start_postgres(stack)
        var_dir = tempfile.mkdtemp(prefix="membership-bench-var.")  # local files never land in the repository
        stack.callback(shutil.rmtree, var_dir, ignore_errors=True)
        settings = Settings.from_env(
            {
                "MEMBERSHIP_DATABASE_URL": url,
                "MEMBERSHIP_SECRET_KEY": "bench-" + "x" * 40,
                "MEMBERSHIP_MAX_PENDING_INVITATIONS": "1000000",
                "MEMBERSHIP_VAR_DIR": var_dir,
            }
        )
        services = build_services(settings)
        stack.callback(services.close)
        app = services.organizations
        if last_position(app):
            print(f"note: the database already holds {last_position(app):,} events; figures include them")

        print(f"database        {redact(url)}  {server_settings(app)}")
        print(f"machine         {os.cpu_count()} CPUs, load average {load_average()} at the start")
        print(
            f"python          {platform.python_version()}  eventsourcing {package_version('eventsourcing')}  "
            f"psycopg {package_version('psycopg')}  {platform.machine()}, {platform.node()}"
        )
        print(
            f"run             events {args.events:,}  sample {args.sample:,}  latency commands {args.latency_commands} "
            f"(+{args.latency_warmup} warm-up)  read/rebuild batch {READ_BATCH:,}  projections {', '.join(PROJECTIONS)}"
        )
        print()

        rng = random.Random(args.random_seed)
        seed_started = time.perf_counter()
        orgs = seed(app, args.events, args.events_per_org, args.seed_batch, args.active_orgs, rng)
        seed_seconds = time.perf_counter() - seed_started
        total = last_position(app)
        gc.collect()
        print()

        raw = timed("1a. raw read, no decoding (select_notifications, 5,000 per call)", lambda: read_all(app, False))
        decoded = timed("1b. raw read + decode (mapper.to_domain_event) -- the baseline", lambda: read_all(app, True))
        base = rate(*decoded)
        library = timed(
            f"2.  eventsourcing.projection.ProjectionRunner, one transaction per event, first {args.sample:,} events",
            lambda: library_runner_rate(settings, args.sample),
        )
        catch_up = None
        catch_up_events = min(args.catch_up_events, total)
        if catch_up_events > 0:
            catch_up = timed(
                f"3a. live runner (projections.runner, 500 events per transaction) catching up from 0, "
                f"first {catch_up_events:,} events",
                lambda: live_catch_up(services, catch_up_events),
            )
        print(
            f"3b. full rebuild of all projections (projections.rebuild, {default_workers()} processes, "
            f"{READ_BATCH:,} events per batch) ...",
            flush=True,
        )
        rebuilt = decoded[0]  # every notification, read and decoded once by the rebuild
        rebuild_seconds, end_to_end_seconds, generations, phases = full_rebuild(services, rebuilt)
        rebuild_rate = rate(rebuilt, rebuild_seconds)
        print(
            f"  {rebuilt:,} events in {rebuild_seconds:.2f} s to the switch = {rebuild_rate:,.0f} events/s; "
            f"{end_to_end_seconds:.2f} s end to end (now active: {', '.join(f'{k} g{v}' for k, v in generations.items())})",
            flush=True,
        )
        for phase, seconds in phases.items():
            print(f"    {seconds:8.2f} s  {phase}")

        profile_text = ""
        alone: dict[str, float] = {}
        subset = min(args.profile_events, total)
        if subset:
            print(f"profiling: rebuild of the first {subset:,} events under cProfile ...", flush=True)
            profiler = cProfile.Profile()
            seconds = partial_rebuild(services, list(PROJECTIONS), subset, profiler)
            profile_text = profile_report(profiler, subset, seconds)
            print(f"breakdown: the first {subset:,} events, without the profiler ...", flush=True)
            alone["read + decode only"] = read_all(app, True, upto=subset)[1]
            alone["all projections (as rebuilt)"] = partial_rebuild(services, list(PROJECTIONS), subset, None)
            for name in PROJECTIONS:
                alone[f"{name} alone"] = partial_rebuild(services, [name], subset, None)

        print(
            f"4.  command-to-visible latency: invite_member + wait_for, {args.latency_commands} commands, "
            f"live runner in the background ...",
            flush=True,
        )
        latency = measure_latency(services, orgs[:10], args.latency_commands, args.latency_warmup)

        # -- the report --------------------------------------------------------
        print()
        print(f"seeding: {total:,} events in {seed_seconds:.1f} s ({rate(total, seed_seconds):,.0f} events/s)")
        print()
        print(f"read-side throughput (baseline: raw read + decode = {base:,.0f} events/s)")
        header = f"{'measurement':<58} {'events':>9} {'seconds':>8} {'events/s':>9} {'x baseline':>10}"
        print(header)
        print("-" * len(header))
        rows: list[tuple[str, tuple[int, float]]] = [
            ("1a raw read, no decoding", raw),
            ("1b raw read + decode (baseline)", decoded),
            ("2  library ProjectionRunner, 1 transaction/event (sample)", library),
        ]
        if catch_up is not None:
            rows.append(("3a live runner catch-up, 500 events/transaction (part)", catch_up))
        rows.append(
            (f"3b full rebuild, {len(PROJECTIONS)} projections, until all switched", (rebuilt, rebuild_seconds))
        )
        rows.append(
            (
                f"3c the same end to end, with the {phases[TimedRebuild.GRACE]:g} s grace and drop",
                (rebuilt, end_to_end_seconds),
            )
        )
        for label, (count, seconds) in rows:
            value = rate(count, seconds)
            print(f"{label:<58} {count:>9,} {seconds:>8.2f} {value:>9,.0f} {value / base:>10.3f}")
        print()
        if alone:
            print(f"rebuild breakdown over the first {subset:,} events (each projection rebuilt alone)")
            header = f"{'what':<34} {'seconds':>8} {'events/s':>9} {'us/event':>9} {'us/event beyond decode':>23}"
            print(header)
            print("-" * len(header))
            decode_us = alone["read + decode only"] / subset * 1e6
            for label, seconds in alone.items():
                us = seconds / subset * 1e6
                beyond = "" if label.startswith("read") else f"{us - decode_us:.1f}"
                print(f"{label:<34} {seconds:>8.2f} {subset / seconds:>9,.0f} {us:>9.1f} {beyond:>23}")
            print()
        ms = 1000
        print(
            f"command-to-visible latency ({len(latency.total)} invite_member commands on {min(10, len(orgs))} organizations)"
        )
        header = f"{'part':<44} {'median ms':>9} {'p95 ms':>8} {'max ms':>8}"
        print(header)
        print("-" * len(header))
        for label, values in (
            ("command (invite_member, committed)", latency.command),
            ("wait alone (wait_for after the command)", latency.wait),
            ("total: command to visible (read-your-writes)", latency.total),
        ):
            print(
                f"{label:<44} {statistics.median(values) * ms:>9.2f} {p95(values) * ms:>8.2f} {max(values) * ms:>8.2f}"
            )
        print()
        ratio = rebuild_rate / base
        latency_median = statistics.median(latency.total) * ms
        targets = [
            (
                f"rebuild >= {REBUILD_TARGET_RATE:,} events/s",
                f"{rebuild_rate:,.0f} events/s",
                rebuild_rate >= REBUILD_TARGET_RATE,
            ),
            (
                f"rebuild >= {REBUILD_TARGET_RATIO:.0%} of raw read + decode",
                f"{ratio:.1%}",
                ratio >= REBUILD_TARGET_RATIO,
            ),
            (
                f"command-to-visible median <= {LATENCY_TARGET_MS:g} ms",
                f"{latency_median:.2f} ms",
                latency_median <= LATENCY_TARGET_MS,
            ),
        ]
        print("targets (informational; nothing asserts on time; the rebuild is judged until the switch, 3b)")
        for target, measured, met in targets:
            print(f"  {target:<44} {measured:>16}  {'MET' if met else 'NOT MET'}")
        print(
            f"  ratios: rebuild / raw read+decode {ratio:.3f} (end to end {rate(rebuilt, end_to_end_seconds) / base:.3f}); "
            f"rebuild / library runner {rebuild_rate / rate(*library):,.1f}x"
            + (f"; live catch-up / raw read+decode {rate(*catch_up) / base:.3f}" if catch_up else "")
        )
        if profile_text:
            print()
            print(profile_text)
    print(f"total runtime {time.perf_counter() - wall:.1f} s; load average {load_average()} at the end")
    return 0


if __name__ == "__main__":
    try:
        status = main()
        sys.exit(3 if Watchdog.fired else status)
    except KeyboardInterrupt:  # the server is already stopped and removed
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        if Watchdog.fired:
            sys.exit(3)
        raise
