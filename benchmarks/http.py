"""HTTP benchmark: the service against a plain CRUD app doing the same checks and writes, same gunicorn, same PostgreSQL.

    .venv/bin/python -m benchmarks.http                         # 10 / 10,000 / 100,000 members, 20 s x 3
    .venv/bin/python -m benchmarks.http --sizes 10,1000 --duration 2 --repetitions 1      # a quick look
    .venv/bin/python -m benchmarks.http --workloads invite,list --service-threads 4 --crud-threads 4

Starts a throwaway PostgreSQL (`scripts/pg start`, durability on), seeds one organization per size
through the domain (`harness.seed`: an Owner and members who joined by a Viewer link) and copies each
into the baseline's own schema (`benchmarks.crud_app`: the same ids, roles and members). Then serves
both with gunicorn and the same number of workers: the service as `membership serve --workers 2
--with-worker` (projections, mailer, bulk jobs and snapshots in its processes, a single node; or with
--separate-worker, `membership worker` beside it, its CPU counted for the service), the baseline with
2 sync workers. The same load generator (`benchmarks.loadgen`: wrk with a Lua script making each
request unique, 16 connections; a Python one without wrk) drives each workload -- POST invite, PUT
role, DELETE member, GET members?limit=50 -- per organization size, interleaved: service, CRUD,
service, CRUD ... for --repetitions rounds.

Printed per workload and size (median of the runs): req/s, p50, p99, max, answers outside 2xx, CPU
per request in the server's processes (gunicorn's master and workers, from /proc/PID/stat; reaped
children included) and in PostgreSQL (the postmaster and every child), and the ratios service/CRUD
against the targets of issue 13; then each side's worker RSS after the largest organization's
workloads, and cold start: a restart, then the first commands on the largest organization.

Every run starts from the same state where it matters: the invitation rate limit and the pending
cap set out of reach on both sides (MEMBERSHIP_INVITES_PER_HOUR, MEMBERSHIP_MAX_PENDING_INVITATIONS,
CRUD_MAX_PENDING_INVITATIONS), an unmeasured warm-up, then a wait until the servers and PostgreSQL
are idle (the service's mailer and snapshot taker finish the previous run's work first). Removals use
up members: before each removal run the organization is topped up with members who join by link,
enough for the run at three times the best command rate seen on that side, so it then holds its
size plus that pool (the 10-member organization too). Pending invitations accumulate run after
run. The service's mailer writes each invitation to an outbox in a temporary MEMBERSHIP_VAR_DIR; the
CRUD app sends no e-mail. A run with more than 1 % errors (non-2xx or socket) is marked INVALID.

Figures only: nothing asserts on time. The exit code is 0 unless something fails.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import jwt
import psycopg
from eventsourcing.persistence import IntegrityError

from benchmarks import crud_app, loadgen
from benchmarks.harness import (
    ROOT,
    SECRET_KEY,
    SeededOrg,
    database_line,
    load_average,
    print_header_line,
    run,
    seed,
    settings_for,
    start_postgres,
    versions_line,
)
from benchmarks.loadgen import COMMANDS, WORKLOADS, Plan, Result
from benchmarks.write import parse_sizes
from membership import Actor
from membership.application import Organizations
from projections.engine import store
from projections.engine.sql import ReadDatabase
from service.bootstrap import build_services

MEMBERSHIP = str(Path(sys.executable).parent / "membership")
JWT_SECRET = "bench-jwt-" + "y" * 40
OUT_OF_REACH = "1000000000"  # rate limit and pending cap: never what refuses the load
INVALID_SHARE = 0.01
MAX_ROLE_TARGETS = 20_000
GUESSED_RATE = 500.0  # req/s, to size a removal pool before any command was measured on that side
POOL_PREFIX = "bench-pool-"
TICK = os.sysconf("SC_CLK_TCK")
# Issue 13's targets, service/CRUD: commands' req/s and p99, reads' req/s; the service alone: invite p99 largest/smallest
COMMAND_RATE, COMMAND_P99, READ_RATE, FLAT = 0.5, 3.0, 0.9, 1.5
RSS_MIB, COLD_MS = 400, 300  # a worker holding the largest organization; first command after a restart


# -- processes: CPU and memory from /proc --------------------------------------------------------------------------------
def _processes() -> dict[int, tuple[int, float]]:
    """Every process: pid -> (parent pid, CPU seconds of it and of its reaped children)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with suppress(OSError):
                stat = Path(f"/proc/{name}/stat").read_text()
                fields = stat[stat.rfind(")") + 2 :].split()
                table[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / TICK)
    return table


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds of `roots` and all their descendants (gunicorn's workers and the snapshot process they
    start, PostgreSQL's backends)."""
    table = _processes()
    tree, added = set(roots), True
    while added:
        grown = tree | {pid for pid, (parent, _) in table.items() if parent in tree}
        tree, added = grown, grown != tree
    return sum(cpu for pid, (_, cpu) in table.items() if pid in tree)


def children(pid: int) -> list[int]:
    return sorted(child for child, (parent, _) in _processes().items() if parent == pid)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- servers -------------------------------------------------------------------------------------------------------------
@dataclass
class Server:
    """A server process started by the benchmark, on a free port, its output in a log file."""

    name: str
    command: Callable[[int], list[str]]
    env: dict[str, str]
    log: Path
    health_path: str | None = "/api/health"  # None: no HTTP (`membership worker`)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 300) -> float:
        """Start; seconds until it answers HTTP (any status)."""
        self.port = _free_port()
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(self.port), cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=log,
                start_new_session=True,  # Ctrl-C reaches the benchmark only, which then stops its servers
            )  # fmt: skip
        while self.health_path is not None:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.base + self.health_path, timeout=5):  # noqa: S310 (our loopback server)
                    break
            except urllib.error.HTTPError:
                break  # it answers (a 503 while the read models catch up is fine)
            except OSError:
                if time.perf_counter() - started > timeout_s:
                    raise RuntimeError(f"{self.name} did not answer within {timeout_s:.0f} s\n{self.tail()}") from None
                time.sleep(0.1)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None else []

    def workers(self) -> list[int]:
        return children(self.process.pid) if self.process is not None else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the organizations and the two sides --------------------------------------------------------------------------------
@dataclass
class Org(SeededOrg):
    """A seeded organization, as both sides hold it, and what requests to it need."""

    index: int = 0
    link_id: UUID | None = None  # the service's removal pools join by this link
    roles: dict[str, UUID] = field(default_factory=dict)  # system role key -> id (the same on both sides)
    tokens: list[str] = field(default_factory=list)  # the Owner's, pre-minted


class Side:
    """One server under test and how to read and change its members around the runs."""

    label = ""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.pooled: dict[UUID, int] = {}  # organization -> pool members ever added
        self.best_rate: dict[UUID, float] = {}  # organization -> the best command rate measured so far

    @property
    def http(self) -> Server:
        return self.servers[0]

    def cpu(self) -> float:
        return tree_cpu(pid for server in self.servers for pid in server.pids())

    def start(self) -> float:
        return sum(server.start() for server in self.servers)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def members(self, org: Org) -> dict[UUID, tuple[str, UUID]]:
        raise NotImplementedError

    def add_members(self, org: Org, users: list[Actor]) -> None:
        raise NotImplementedError

    def caught_up(self) -> None:
        """Return once what was written is visible to reads."""


class ServiceSide(Side):
    label = "service"

    def __init__(self, servers: list[Server], app: Organizations, read_db: ReadDatabase) -> None:
        super().__init__(servers)
        self.app, self.read_db = app, read_db

    def members(self, org: Org) -> dict[UUID, tuple[str, UUID]]:
        with self.app.reading(org.id) as live:  # the cached object, fast-forwarded to the stored events
            return {m.id: (m.user_id, m.role_id) for m in live.members.values()}

    def add_members(self, org: Org, users: list[Actor]) -> None:
        assert org.link_id is not None
        for start in range(0, len(users), 2000):
            for attempt in range(1, 6):
                try:
                    with self.app.reading(org.id) as live:
                        now = datetime.now(UTC)
                        for user in users[start : start + 2000]:
                            live.redeem_invite_link(user, org.link_id, uuid4(), now)
                        self.app.save(live)  # one transaction per batch, as harness.seed
                    break
                except IntegrityError:  # the server wrote meanwhile (its mailer): again from the stored state
                    assert self.app.repository.cache is not None
                    with suppress(KeyError):
                        self.app.repository.cache.get(org.id, evict=True)
                    if attempt == 5:
                        raise
        self.caught_up()

    def caught_up(self) -> None:
        position = self.app.recorder.max_notification_id()
        started = time.monotonic()
        while True:
            try:
                return store.wait_for(self.read_db, position, timeout=30)
            except store.ReadModelLaggingError as lagging:
                print(f"  waiting for the service's read models ({time.monotonic() - started:.0f} s): {lagging}")
                self.http.check_alive()


class CrudSide(Side):
    label = "CRUD"

    def __init__(self, servers: list[Server], conn: psycopg.Connection[tuple[object, ...]]) -> None:
        super().__init__(servers)
        self.conn = conn

    def members(self, org: Org) -> dict[UUID, tuple[str, UUID]]:
        return crud_app.member_states(self.conn, org.id)

    def add_members(self, org: Org, users: list[Actor]) -> None:
        now = datetime.now(UTC)
        rows = [
            crud_app.MemberRow(uuid4(), u.user_id, u.email, u.name, org.viewer_role_id, now + timedelta(microseconds=i))
            for i, u in enumerate(users)
        ]
        with self.conn.transaction():
            crud_app.add_members(self.conn, org.id, rows)


def seed_both(app: Organizations, conn: psycopg.Connection[tuple[object, ...]], size: int, index: int, batch: int,
              tokens: int) -> Org:  # fmt: skip
    """An organization of `size` members through the domain, then the same roles and members for the CRUD app."""
    org = seed(app, size, index, batch, Org)
    org.index = index
    org.link_id = app.create_invite_link(org.id, org.owner, org.viewer_role_id, max_uses=0, expires_in_days=365).id
    with app.reading(org.id) as live:
        roles = [crud_app.RoleRow(r.id, r.key, r.name, r.permissions) for r in live.roles.values()]
        members = [crud_app.MemberRow(m.id, m.user_id, m.email, m.name, m.role_id, m.joined_at)
                   for m in live.members.values()]  # fmt: skip
        name, created_on = live.name, live.created_on
    with conn.transaction():
        crud_app.seed_organization(conn, org.id, name, created_on, roles, members)
    org.roles = {role.key: role.id for role in roles if role.key}
    now = datetime.now(UTC)
    claims = {"sub": org.owner.user_id, "email": org.owner.email, "name": org.owner.name, "iat": now}
    org.tokens = [jwt.encode({**claims, "exp": now + timedelta(days=2), "jti": f"{index}-{n}"}, JWT_SECRET, "HS256")
                  for n in range(tokens)]  # fmt: skip
    return org


# -- one run -------------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    result: Result
    app_cpu_s: float
    pg_cpu_s: float

    @property
    def app_ms(self) -> float:
        return self.app_cpu_s * 1000 / max(self.result.requests, 1)

    @property
    def pg_ms(self) -> float:
        return self.pg_cpu_s * 1000 / max(self.result.requests, 1)


class Bench:
    """The runs: what to send, to whom, and waiting for quiet in between."""

    def __init__(
        self, args: argparse.Namespace, sides: list[Side], pg_root: int, workdir: Path, wrk: str | None
    ) -> None:
        self.args, self.sides, self.pg_root, self.workdir, self.wrk = args, sides, pg_root, workdir, wrk
        self.serial = 0

    def pg_cpu(self) -> float:
        return tree_cpu([self.pg_root])

    def all_cpu(self) -> float:
        return self.pg_cpu() + sum(side.cpu() for side in self.sides)

    def settle(self) -> None:
        """Wait until the servers and PostgreSQL are idle (background work of the previous run done)."""
        started, before = time.monotonic(), self.all_cpu()
        while True:
            time.sleep(1.0)
            now = self.all_cpu()
            busy, before = now - before, now
            if busy < self.args.settle_cpu:
                return
            if time.monotonic() - started > self.args.settle_timeout:
                print(f"  (still {busy:.2f} cores busy after {self.args.settle_timeout:.0f} s; measuring anyway)")
                return

    def load(self, side: Side, plan: Plan, seconds: int) -> Result:
        for server in side.servers:
            server.check_alive()
        a = self.args
        if self.wrk is None:
            return loadgen.run_python(side.http.base, plan, a.connections, seconds, a.timeout)
        return loadgen.run_wrk(self.wrk, side.http.base, plan, self.workdir, a.connections, a.wrk_threads, seconds,
                               a.timeout)  # fmt: skip

    def plan(self, side: Side, org: Org, workload: str) -> Plan:
        self.serial += 1
        plan = Plan(workload, org.id, org.tokens)
        if workload == "invite":
            plan.prefix, plan.invite_role = f"r{self.serial}-{uuid4().hex[:6]}", org.viewer_role_id
        elif workload in ("role", "remove"):
            states = side.members(org)
            pooled = workload == "remove"
            plan.targets = sorted(
                (member, role) for member, (user, role) in states.items()
                if user != org.owner.user_id and user.startswith(POOL_PREFIX) == pooled
            )[: None if pooled else MAX_ROLE_TARGETS]  # fmt: skip
            plan.roles = (org.roles["viewer"], org.roles["developer"])
            if len(plan.targets) < self.args.wrk_threads:  # each wrk thread (or Python client) needs its share
                raise SystemExit(f"{org.size}-member organization: {len(plan.targets)} members to {workload}, "
                                 f"fewer than --wrk-threads {self.args.wrk_threads}")  # fmt: skip
        return plan

    def top_up(self, side: Side, org: Org, seconds: int) -> int:
        """Enough members to remove for `seconds` at three times the best command rate seen on this side
        (removals may be faster than invites; a pool used up shows as 404s, counted)."""
        rate = side.best_rate.get(org.id, GUESSED_RATE)
        want = math.ceil(3 * rate * seconds) + 4 * self.args.connections
        present = sum(user.startswith(POOL_PREFIX) for user, _ in side.members(org).values())
        if present < want:
            first = side.pooled.get(org.id, 0)
            users = [Actor(f"{POOL_PREFIX}{org.index}-{k}", f"pool{k}.org{org.index}@bench.example", f"Pool {k}")
                     for k in range(first, first + want - present)]  # fmt: skip
            side.add_members(org, users)
            side.pooled[org.id] = first + len(users)
        return max(want, present)

    def measure(self, side: Side, org: Org, workload: str) -> Run:
        a = self.args
        if workload == "remove":
            self.top_up(side, org, a.warmup + a.duration)
        side.caught_up()
        self.settle()
        if a.warmup:
            self.load(side, self.plan(side, org, workload), a.warmup)
            self.settle()
        plan = self.plan(side, org, workload)
        app_cpu, pg_cpu = side.cpu(), self.pg_cpu()
        result = self.load(side, plan, a.duration)
        measured = Run(result, side.cpu() - app_cpu, self.pg_cpu() - pg_cpu)
        if workload in COMMANDS:
            side.best_rate[org.id] = max(side.best_rate.get(org.id, 0.0), result.rate)
        return measured


# -- reporting -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    """A side's runs of one workload on one organization: medians, worst max, totals."""

    rate: float
    p50: float
    p99: float
    max: float
    failed: int
    requests: int
    app_ms: float
    pg_ms: float
    rates: tuple[float, ...]

    @classmethod
    def of(cls, runs: list[Run]) -> Figures:
        med = statistics.median
        return cls(
            med(r.result.rate for r in runs), med(r.result.p50_ms for r in runs), med(r.result.p99_ms for r in runs),
            max(r.result.max_ms for r in runs), sum(r.result.non_2xx + r.result.socket_errors for r in runs),
            sum(r.result.requests for r in runs), med(r.app_ms for r in runs), med(r.pg_ms for r in runs),
            tuple(r.result.rate for r in runs),
        )  # fmt: skip

    @property
    def valid(self) -> bool:
        return self.failed <= INVALID_SHARE * max(self.requests, 1)


def progress(side: Side, org: Org, workload: str, rep: int, reps: int, measured: Run) -> None:
    r = measured.result
    failures = f"non-2xx {r.non_2xx}" + (f" ({r.statuses})" if r.statuses else "") + (
        f"  socket errors {r.socket_errors}" if r.socket_errors else "")  # fmt: skip
    print(f"  {org.size:>9,} {workload:<6} {rep}/{reps} {side.label:<7} {r.rate:8.1f} req/s  p50 {r.p50_ms:7.1f} ms"
          f"  p99 {r.p99_ms:7.1f} ms  CPU/req {measured.app_ms:6.2f} + {measured.pg_ms:6.2f} ms  {failures}",
          flush=True)  # fmt: skip


def report(org: Org, workload: str, service: Figures, crud: Figures) -> None:
    print()
    print(f"{WORKLOADS[workload]} on the {org.size:,}-member organization (median of {len(service.rates)} runs)")
    header = (f"{'':<13} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} "
              f"{'app ms/req':>10} {'pg ms/req':>9}  runs (req/s)")  # fmt: skip
    print(header)
    print("-" * len(header))
    for label, f in (("service", service), ("CRUD", crud)):
        runs = " ".join(f"{x:.1f}" for x in f.rates) + ("" if f.valid else "  INVALID: errors > 1 %")
        print(f"{label:<13} {f.rate:>8.1f} {f.p50:>8.1f} {f.p99:>8.1f} {f.max:>8.1f} {f.failed:>7} "
              f"{f.app_ms:>10.2f} {f.pg_ms:>9.2f}  {runs}")  # fmt: skip
    print(f"{'service/CRUD':<13} {_ratio(service.rate, crud.rate):>8.2f} {_ratio(service.p50, crud.p50):>8.2f} "
          f"{_ratio(service.p99, crud.p99):>8.2f} {_ratio(service.max, crud.max):>8.2f} {'':>7} "
          f"{_ratio(service.app_ms, crud.app_ms):>10.2f} {_ratio(service.pg_ms, crud.pg_ms):>9.2f}")  # fmt: skip
    print(flush=True)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def summary(figures: dict[tuple[int, str], tuple[Figures, Figures]], sizes: list[int], workloads: list[str]) -> None:
    print(
        f"summary, service/CRUD (targets: commands >= {COMMAND_RATE}x req/s and p99 <= {COMMAND_P99}x; "
        f"reads >= {READ_RATE}x)"
    )
    header = f"{'workload':<34} {'members':>9} {'req/s':>7} {'p99':>7} {'CPU':>7}  target"
    print(header)
    print("-" * len(header))
    for workload in workloads:
        for size in sizes:
            service, crud = figures[(size, workload)]
            rate, p99 = _ratio(service.rate, crud.rate), _ratio(service.p99, crud.p99)
            cpu = _ratio(service.app_ms + service.pg_ms, crud.app_ms + crud.pg_ms)
            met = rate >= COMMAND_RATE and p99 <= COMMAND_P99 if workload in COMMANDS else rate >= READ_RATE
            verdict = ("MET" if met else "NOT MET") + ("" if service.valid and crud.valid else " (INVALID runs)")
            print(f"{WORKLOADS[workload]:<34} {size:>9,} {rate:>7.2f} {p99:>7.2f} {cpu:>7.2f}  {verdict}")
    if "invite" in workloads and len(sizes) > 1:
        small, large = figures[(sizes[0], "invite")][0], figures[(sizes[-1], "invite")][0]
        flat = _ratio(large.p99, small.p99)
        print(f"flat: the service's invite p99 at {sizes[-1]:,} / at {sizes[0]:,} members = {flat:.2f} "
              f"(target <= {FLAT}) -> {'MET' if flat <= FLAT else 'NOT MET'}")  # fmt: skip
    print("(informational: nothing asserts on these)")


def memory(sides: list[Side], size: int) -> None:
    print()
    print(f"RSS after the workloads on the {size:,}-member organization")
    for side in sides:
        workers = [rss_mib(pid) for pid in side.http.workers()]
        shown = ", ".join(f"{x:.0f}" for x in workers)
        master = rss_mib(side.http.pids()[0])
        verdict = ""
        if isinstance(side, ServiceSide):
            met = max(workers, default=0) <= RSS_MIB
            verdict = f"  (target <= {RSS_MIB} MiB: {'MET' if met else 'NOT MET'})"
        print(f"  {side.label:<8} workers {shown} MiB; master {master:.0f} MiB{verdict}")


def cold_start(bench: Bench, sides: list[Side], org: Org, commands: int = 3) -> None:
    print()
    print(
        f"cold start: restart, then the first {commands} commands (POST invite) on the {org.size:,}-member organization"
    )
    for side in sides:
        side.stop()
        boot = side.start()
        requests = loadgen.Requests(bench.plan(side, org, "invite"), 0, 1)
        timings = []
        for _ in range(commands):
            method, path, body, headers = requests.next()
            conn = http.client.HTTPConnection("127.0.0.1", side.http.port, timeout=bench.args.timeout)
            started = time.perf_counter()
            conn.request(method, path, body, headers)
            status = conn.getresponse()
            status.read()
            conn.close()
            timings.append(f"{(time.perf_counter() - started) * 1000:.0f} ms" + ("" if status.status < 300 else
                                                                             f" ({status.status})"))  # fmt: skip
        print(f"  {side.label:<8} up in {boot:.1f} s; first commands: {', '.join(timings)}")
    print(f"  (target: the service's first command <= {COLD_MS} ms)")


# -- main ----------------------------------------------------------------------------------------------------------------
def parse_workloads(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"--workloads: choose from {', '.join(WORKLOADS)}")
    return [w for w in WORKLOADS if w in chosen]  # in the fixed order: removals size their pool on earlier rates


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    add = parser.add_argument
    add(
        "--sizes",
        type=parse_sizes,
        default=[10, 10_000, 100_000],
        help="members per organization (default: 10,10000,100000)",
    )
    add("--workloads", type=parse_workloads, default=list(WORKLOADS), help=f"default: {','.join(WORKLOADS)}")
    add("--duration", type=int, default=20, help="seconds per measured run (default: 20)")
    add("--warmup", type=int, default=3, help="unmeasured seconds before each run (default: 3; 0: none)")
    add("--repetitions", type=int, default=3, help="runs per side, workload and size, interleaved (default: 3)")
    add("--connections", type=int, default=16, help="concurrent connections (default: 16)")
    add("--wrk-threads", type=int, default=2, help="wrk's threads (default: 2)")
    add(
        "--timeout",
        type=int,
        default=30,
        help="seconds a request may take before the client counts an error (default: 30)",
    )
    add("--workers", type=int, default=2, help="gunicorn workers, each side (default: 2)")
    add("--service-threads", type=int, help="`membership serve --threads` (default: the service's own)")
    add(
        "--crud-threads",
        type=int,
        default=1,
        help="the CRUD app's threads per worker (default: 1, sync workers; more: gthread)",
    )
    add("--serve-arg", action="append", default=[], help="one more argument for `membership serve` (repeatable)")
    add(
        "--separate-worker",
        action="store_true",
        help="run `membership worker` beside the server instead of --with-worker",
    )
    add("--python-loadgen", action="store_true", help="the Python load generator even if wrk is there")
    add("--batch", type=int, default=2_000, help="seeding events per transaction (default: 2000)")
    add("--tokens", type=int, default=16, help="pre-minted tokens per organization (default: 16)")
    add("--settle-cpu", type=float, default=0.15, help="idle: under this many cores busy over 1 s (default: 0.15)")
    add("--settle-timeout", type=float, default=60, help="seconds to wait for idle at most (default: 60)")
    args = parser.parse_args(argv)
    if min(args.duration, args.repetitions, args.connections, args.workers, args.crud_threads) < 1 or args.warmup < 0:
        parser.error("--duration, --repetitions, --connections, --workers and --crud-threads must be at least 1")
    return args


def service_servers(args: argparse.Namespace, url: str, workdir: Path) -> list[Server]:
    env = {
        "MEMBERSHIP_DATABASE_URL": url, "MEMBERSHIP_SECRET_KEY": SECRET_KEY, "MEMBERSHIP_JWT_SECRET": JWT_SECRET,
        "MEMBERSHIP_INVITES_PER_HOUR": OUT_OF_REACH, "MEMBERSHIP_MAX_PENDING_INVITATIONS": OUT_OF_REACH,
        "MEMBERSHIP_VAR_DIR": str(workdir / "var"),  # the e-mail outbox, never the work tree's var/
    }  # fmt: skip
    threads = ["--threads", str(args.service_threads)] if args.service_threads else []
    mode = [] if args.separate_worker else ["--with-worker"]
    serve = Server("membership serve", lambda port: [
        MEMBERSHIP, "serve", "--port", str(port), "--workers", str(args.workers), *threads, *mode, *args.serve_arg,
    ], env, workdir / "service.log")  # fmt: skip
    if not args.separate_worker:
        return [serve]
    return [serve, Server("membership worker", lambda _: [MEMBERSHIP, "worker"], env, workdir / "worker.log", None)]


def crud_server(args: argparse.Namespace, url: str, workdir: Path) -> Server:
    env = {"CRUD_DATABASE_URL": url, "CRUD_JWT_SECRET": JWT_SECRET, "CRUD_MAX_PENDING_INVITATIONS": OUT_OF_REACH,
           "CRUD_POOL_SIZE": str(args.crud_threads)}  # fmt: skip
    kind = "sync" if args.crud_threads == 1 else "gthread"
    return Server("CRUD app", lambda port: [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
        "--worker-class", kind, "--threads", str(args.crud_threads), "benchmarks.crud_app:create_app()",
    ], env, workdir / "crud.log")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    wall = time.perf_counter()
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="membership-bench-http."))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        wrk = None if args.python_loadgen else loadgen.find_wrk(install=True)
        url = start_postgres(stack)
        services = build_services(settings_for(url, {"MEMBERSHIP_MAX_PENDING_INVITATIONS": OUT_OF_REACH}))
        stack.callback(services.close)
        app = services.organizations
        conn = stack.enter_context(psycopg.connect(url, autocommit=True))
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        pg_root = _processes()[int(backend[0])][0]  # the postmaster: PostgreSQL is local (scripts/pg)

        service = ServiceSide(service_servers(args, url, workdir), app, services.read_db)
        crud = CrudSide([crud_server(args, url, workdir)], conn)
        sides: list[Side] = [service, crud]
        serve_line = " ".join(service.http.command(0)[1:]).replace("--port 0 ", "")
        print_header_line("database", database_line(url, app))
        print_header_line("python", versions_line("eventsourcing", "flask", "gunicorn", "psycopg", "pyjwt"))
        print_header_line("machine", f"{os.cpu_count()} CPUs, load average {load_average()}")
        print_header_line(
            "service", f"membership {serve_line}" + ("  + membership worker" if args.separate_worker else "")
        )
        print_header_line("CRUD", f"gunicorn {args.workers} {'sync' if args.crud_threads == 1 else 'gthread'} workers"
                                  f"  threads {args.crud_threads}  benchmarks.crud_app")  # fmt: skip
        print_header_line("load", f"{loadgen.wrk_version(wrk) if wrk else 'Python load generator'}  {args.connections} "
                                  f"connections  {args.duration} s per run (+{args.warmup} s warm-up)  "
                                  f"{args.repetitions} interleaved runs per side")  # fmt: skip
        print_header_line("run", f"sizes {', '.join(f'{s:,}' for s in args.sizes)}  workloads {','.join(args.workloads)}"
                                 "  rate limit and pending cap out of reach on both sides")  # fmt: skip
        print()

        crud_app.create_schema(conn)
        orgs = [seed_both(app, conn, size, i, args.batch, args.tokens) for i, size in enumerate(args.sizes)]
        conn.execute("ANALYZE")
        for side in sides:
            stack.callback(side.stop)
            print(f"starting the {side.label}: up in {side.start():.1f} s", flush=True)
        service.caught_up()

        bench = Bench(args, sides, pg_root, workdir, wrk)
        figures: dict[tuple[int, str], tuple[Figures, Figures]] = {}
        print("\nmeasuring: size, workload, run, side, then the figures", flush=True)
        for org in orgs:
            for workload in args.workloads:
                runs: dict[Side, list[Run]] = {side: [] for side in sides}
                for rep in range(1, args.repetitions + 1):
                    for side in sides:
                        measured = bench.measure(side, org, workload)
                        runs[side].append(measured)
                        progress(side, org, workload, rep, args.repetitions, measured)
                figures[(org.size, workload)] = (Figures.of(runs[service]), Figures.of(runs[crud]))
                report(org, workload, *figures[(org.size, workload)])
        summary(figures, args.sizes, args.workloads)
        memory(sides, orgs[-1].size)
        cold_start(bench, sides, orgs[-1])
    print(f"\ntotal runtime {time.perf_counter() - wall:.1f} s")
    return 0


if __name__ == "__main__":
    run(main)
