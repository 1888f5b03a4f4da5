"""The measured stages of `benchmarks.projections`: 1. raw read (and decode) of the event store, 2. the
eventsourcing library's ProjectionRunner, 3. the service's live catch-up and full rebuild, 4. command-to-visible
latency; and the cProfile report of a partial rebuild."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection as LibraryProjection
from eventsourcing.projection import ProjectionRunner as LibraryProjectionRunner
from psycopg.sql import SQL, Identifier

from benchmarks.harness import ROOT, Watchdog, rate
from benchmarks.projections_seed import CommandTarget
from membership.application import Organizations
from membership.personal_data import decoded
from projections.engine import tracking
from projections.engine.catalog import PROJECTIONS
from projections.engine.rebuild import Rebuild, default_workers
from projections.engine.runner import ProjectionRunner
from projections.engine.store import wait_for
from service.bootstrap import Services
from service.settings import Settings

READ_BATCH = 5000


# -- 1. raw read ---------------------------------------------------------------
def read_all(app: Organizations, decode: bool, upto: int | None = None) -> tuple[int, float]:
    """Reads (and decodes) every notification; returns (count, seconds)."""
    recorder, mapper = app.recorder, app.mapper
    count, position = 0, 0
    started = time.perf_counter()
    while notifications := recorder.select_notifications(start=position + 1, limit=READ_BATCH, stop=upto):
        if decode:
            decoded(mapper, notifications)  # as the service decodes a batch: the people's keys first, in one query
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
        database=services.settings.database, workers=default_workers(),
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


def measure_latency(services: Services, orgs: list[CommandTarget], commands: int, warmup: int) -> Latency:
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


def timed(label: str, action: Callable[[], tuple[int, float]]) -> tuple[int, float]:
    print(f"{label} ...", flush=True)
    count, seconds = action()
    print(f"  {count:,} events in {seconds:.2f} s = {rate(count, seconds):,.0f} events/s", flush=True)
    return count, seconds
