"""Write-path benchmark: does an invite cost the same in a huge organization as in a tiny one?

    .venv/bin/python -m benchmarks.write                       # 10 / 10,000 / 100,000 members
    .venv/bin/python -m benchmarks.write --sizes 10,1000 --invites 100
    .venv/bin/python -m benchmarks.write --database-url postgresql://...   # an existing (empty) database

Seeds one organization per size on PostgreSQL (through the domain: an unlimited
Viewer invite link redeemed by many users, saved in batches of one transaction),
then times `Organizations.invite_member` on each, interleaving the sizes round
by round so drift (autovacuum, GC, the disk) affects every size alike. The
smallest organization is the baseline; the figures that matter are the ratios
large/baseline of the median and p95 latency (target: <= 1.5).

Also printed: the seeding rate, a cold load (cache evicted: snapshot + events),
and, separately, invites placed on a snapshot version (1 command in every
snapshot interval pays for snapshotting the whole organization). `--profile N`
adds a cProfile of N ordinary invites and of one snapshot-taking invite.

Without --database-url a throwaway PostgreSQL server is started with
`scripts/pg start` (durability on: fsync, synchronous commit) and removed at exit.

Figures only: nothing here asserts on time. The exit code is 0 unless something fails.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import pstats
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from uuid import UUID

from benchmarks.harness import (
    SeededOrg,
    database_line,
    p95,
    print_header_line,
    run,
    seed,
    settings_for,
    snapshot_interval,
    start_postgres,
    versions_line,
)
from membership.application import Organizations
from service.bootstrap import build_organizations

TARGET_RATIO = 1.5


@dataclass
class Org(SeededOrg):
    """One seeded organization and its measurements."""

    cold_loads_ms: list[float] = field(default_factory=list)  # the first, then again and again
    latencies: list[float] = field(default_factory=list)  # seconds, measured invites only
    snapshot_latencies: list[float] = field(default_factory=list)  # measured invites that took a snapshot
    probe_latencies: list[float] = field(default_factory=list)  # invites placed on a snapshot boundary


COLD_LOADS = 5


def cold_load_ms(app: Organizations, org: Org) -> float:
    """Evict from the cache, then load again (latest snapshot + the events after it)."""
    assert app.repository.cache is not None
    with contextlib.suppress(KeyError):  # not cached
        app.repository.cache.get(org.id, evict=True)
    started = time.perf_counter()
    with app.reading(org.id):
        pass
    return (time.perf_counter() - started) * 1000


def storage(app: Organizations, orgs: list[Org]) -> None:
    """What the store holds: each organization's latest snapshot (bytes, and per member), and the tables."""
    print("storage: the latest snapshot of each organization, and the tables on disk (with their indexes)")
    for org in orgs:
        found = [] if app.snapshots is None else list(app.snapshots.get(org.id, desc=True, limit=1))
        if found:
            stored = app.snapshots.mapper.to_stored_event(found[0])  # type: ignore[union-attr]
            print(f"  {org.size:>9,} members: snapshot {len(stored.state):>12,} bytes, "
                  f"{len(stored.state) / org.size:>7.0f} bytes per member")  # fmt: skip
    recorder = app.recorder
    tables = {"events": recorder.events_table_name}  # type: ignore[attr-defined]
    if app.snapshots is not None:
        tables["snapshots"] = app.snapshots.recorder.events_table_name  # type: ignore[attr-defined]
    tables["personal keys"] = "personal_keys"
    schema = recorder.datastore.schema  # type: ignore[attr-defined]
    sizes = {}
    with recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        for label, table in tables.items():
            cursor.execute("SELECT pg_total_relation_size(%s) AS size", (f"{schema}.{table}",))
            sizes[label] = int(cursor.fetchone()["size"])
    print("  " + "  ".join(f"{label} {size / 2**20:,.1f} MiB" for label, size in sizes.items())
          + (f"  (snapshots/events {sizes['snapshots'] / sizes['events']:.2f})" if "snapshots" in sizes else ""))


def latest_snapshot_version(app: Organizations, org_id: UUID) -> int | None:
    if app.snapshots is None:
        return None
    found = list(app.snapshots.get(org_id, desc=True, limit=1))
    return found[0].originator_version if found else None


# -- measuring -----------------------------------------------------------------
def invite(app: Organizations, org: Org, n: int) -> float:
    started = time.perf_counter()
    app.invite_member(org.id, org.owner, f"invitee{n}.size{org.size}@bench.example", org.viewer_role_id)
    elapsed = time.perf_counter() - started
    org.version += 1
    return elapsed


def measure(app: Organizations, orgs: list[Org], warmup: int, invites: int, interval: int | None) -> None:
    """Round-robin: one invite per size per round, the starting size rotating each round."""
    n = 0
    for round_ in range(warmup + invites):
        for k in range(len(orgs)):
            org = orgs[(round_ + k) % len(orgs)]
            n += 1
            elapsed = invite(app, org, n)
            if round_ >= warmup:
                org.latencies.append(elapsed)
                if interval and org.version % interval == 0:
                    org.snapshot_latencies.append(elapsed)
        done = round_ + 1 - warmup
        if done > 0 and (done % 100 == 0 or done == invites):
            print(f"  measured {done:>5} / {invites} rounds", flush=True)


def advance_to_boundary(app: Organizations, org: Org, interval: int, serial: int) -> int:
    """Unmeasured invites until the next one lands on a snapshot version."""
    while (org.version + 1) % interval:
        serial += 1
        invite(app, org, serial)
    return serial


def probe_snapshots(app: Organizations, orgs: list[Org], interval: int, probes: int) -> None:
    """Time invites that land exactly on a snapshot version (1 command in `interval` in production)."""
    serial = 5_000_000
    for _ in range(probes):
        for org in orgs:
            serial = advance_to_boundary(app, org, interval, serial)
            serial += 1
            org.probe_latencies.append(invite(app, org, serial))


def profile_invites(app: Organizations, org: Org, count: int, interval: int | None) -> str:
    """cProfile of `count` ordinary invites, then (separately) of one that takes a snapshot."""
    out = io.StringIO()
    serial = 10_000_000
    if interval and (org.version + count) // interval > org.version // interval:
        serial = advance_to_boundary(app, org, interval, serial) + 1
        invite(app, org, serial)  # past the boundary: the ordinary sample must not contain a snapshot
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        serial += 1
        invite(app, org, serial)
    profiler.disable()
    out.write(f"--- {count} ordinary invites (no snapshot), by cumulative time\n")
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    if interval:
        serial = advance_to_boundary(app, org, interval, serial)
        profiler = cProfile.Profile()
        profiler.enable()
        invite(app, org, serial + 1)
        profiler.disable()
        out.write(f"--- 1 invite that takes a snapshot (version {org.version:,}), by cumulative time\n")
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    return out.getvalue()


# -- reporting -----------------------------------------------------------------
def report(orgs: list[Org], interval: int | None) -> bool:
    base = orgs[0]
    base_median, base_p95 = statistics.median(base.latencies), p95(base.latencies)
    print()
    print(
        f"invite_member latency (baseline: the {base.size:,}-member organization; {len(base.latencies)} commands each)"
    )
    header = (
        f"{'members':>9}  {'n':>4}  {'median ms':>9}  {'p95 ms':>8}  {'max ms':>8}  {'cmds/s':>7}  "
        f"{'median/base':>11}  {'p95/base':>8}"
    )
    print(header)
    print("-" * len(header))
    for org in orgs:
        median, high = statistics.median(org.latencies), p95(org.latencies)
        rate = len(org.latencies) / sum(org.latencies)
        print(
            f"{org.size:>9,}  {len(org.latencies):>4}  {median * 1000:>9.2f}  {high * 1000:>8.2f}  "
            f"{max(org.latencies) * 1000:>8.2f}  {rate:>7.0f}  {median / base_median:>11.2f}  {high / base_p95:>8.2f}"
        )
    if interval:
        print()
        print(f"measured invites that took a snapshot (version % {interval} == 0):")
        for org in orgs:
            shown = ", ".join(f"{x * 1000:.1f} ms" for x in org.snapshot_latencies) or "none"
            print(f"  {org.size:>9,} members: {shown}")
    if interval and base.probe_latencies:
        print()
        print(
            f"invites that take a snapshot (1 in {interval} commands; placed on the boundary on purpose, "
            "not in the table above)"
        )
        header = f"{'members':>9}  {'n':>2}  {'median ms':>9}  {'max ms':>8}  {'x base median':>13}  {'mean ms incl. 1/' + str(interval):>18}"
        print(header)
        print("-" * len(header))
        for org in orgs:
            probe = statistics.median(org.probe_latencies)
            amortised = (statistics.fmean(org.latencies) * (interval - 1) + probe) / interval
            print(
                f"{org.size:>9,}  {len(org.probe_latencies):>2}  {probe * 1000:>9.1f}  "
                f"{max(org.probe_latencies) * 1000:>8.1f}  {probe / base_median:>13.0f}  {amortised * 1000:>18.2f}"
            )
    largest = orgs[-1]
    ratio_median = statistics.median(largest.latencies) / base_median
    ratio_p95 = p95(largest.latencies) / base_p95
    met = ratio_median <= TARGET_RATIO and ratio_p95 <= TARGET_RATIO
    print()
    print(
        f"target ratio <= {TARGET_RATIO} ({largest.size:,} vs {base.size:,} members): "
        f"median {ratio_median:.2f}, p95 {ratio_p95:.2f} -> {'MET' if met else 'NOT MET'} (informational)"
    )
    return met


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes wants whole numbers separated by commas, not {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("--sizes wants at least one size, each at least 1")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL to use (its tables are created if missing; use an empty database).\n"
        "Default: a throwaway server from scripts/pg, removed at exit.",
    )
    parser.add_argument("--sizes", type=parse_sizes, default=[10, 10_000, 100_000], help="default: 10,10000,100000")
    parser.add_argument("--invites", type=int, default=300, help="measured invites per size (default: 300)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured rounds first (default: 20)")
    parser.add_argument("--batch", type=int, default=2_000, help="seeding events per transaction (default: 2000)")
    parser.add_argument(
        "--snapshot-interval", type=int, help="override MEMBERSHIP_SNAPSHOT_INTERVAL (default: the service's own)"
    )
    parser.add_argument(
        "--snapshot-probes",
        type=int,
        default=3,
        metavar="N",
        help="per size, N invites placed on a snapshot version (default: 3; 0: skip)",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="afterwards, cProfile N extra invites on the largest org"
    )
    args = parser.parse_args(argv)
    if args.invites < 2:
        parser.error("--invites must be at least 2")

    wall = time.perf_counter()
    with ExitStack() as stack:
        url = args.database_url or start_postgres(stack)
        env = {"MEMBERSHIP_MAX_PENDING_INVITATIONS": "1000000"}
        if args.snapshot_interval:
            env["MEMBERSHIP_SNAPSHOT_INTERVAL"] = str(args.snapshot_interval)
        settings = settings_for(url, env)
        app = build_organizations(settings)
        stack.callback(app.close)
        interval = snapshot_interval(app)

        print_header_line("database", database_line(url, app))
        print_header_line("python", versions_line("eventsourcing"))
        print_header_line(
            "service",
            f"snapshot interval {interval}  cache size {settings.cache_size}  "
            f"deepcopy from cache {app.repository.deepcopy_from_cache}  fast-forward {app.repository.fastforward}",
        )
        print_header_line(
            "run",
            f"sizes {', '.join(f'{s:,}' for s in args.sizes)}  invites {args.invites}/size  "
            f"warmup {args.warmup} rounds  seeding batch {args.batch:,} events",
        )
        print()

        orgs: list[Org] = []
        for index, size in enumerate(args.sizes):
            org = seed(app, size, index, args.batch, Org)
            org.cold_loads_ms = [cold_load_ms(app, org) for _ in range(COLD_LOADS)]
            orgs.append(org)
        print()
        print("seeding (through the domain, one transaction per batch), then one snapshot as the service takes it")
        print(
            f"{'members':>9}  {'events':>9}  {'seconds':>8}  {'events/s':>8}  {'snapshot':>9}  "
            f"{'snapshot s':>10}  {'cold load ms: first, median':>27}"
        )
        for org in orgs:
            snap = latest_snapshot_version(app, org.id)
            print(
                f"{org.size:>9,}  {org.seed_events:>9,}  {org.seed_seconds:>8.1f}  "
                f"{org.seed_events / org.seed_seconds:>8,.0f}  {'v' + format(snap, ',') if snap else '-':>9}  "
                f"{org.snapshot_seconds:>10.2f}  {org.cold_loads_ms[0]:>17.1f}  "
                f"{statistics.median(org.cold_loads_ms):>8.1f}"
            )
        total_events = sum(o.seed_events for o in orgs)
        total_seconds = sum(o.seed_seconds for o in orgs)
        print(f"{'total':>9}  {total_events:>9,}  {total_seconds:>8.1f}  {total_events / total_seconds:>8,.0f}")
        print(f"cold load: evicted from the cache, then loaded (latest snapshot + the events after it), {COLD_LOADS} times")
        print()
        storage(app, orgs)
        print()

        gc.collect()  # seeding garbage out of the way; the big organizations stay, as in production
        print(f"measuring: {args.warmup} warm-up + {args.invites} measured rounds, one invite per size per round")
        measure(app, orgs, args.warmup, args.invites, interval)
        if interval and args.snapshot_probes:
            print(f"probing snapshots: {args.snapshot_probes} invites per size on a version divisible by {interval}")
            probe_snapshots(app, orgs, interval, args.snapshot_probes)
        report(orgs, interval)

        if args.profile:
            print()
            print(f"cProfile of {args.profile} more invites on the {orgs[-1].size:,}-member organization:")
            print(profile_invites(app, orgs[-1], args.profile, interval))
    print(f"total runtime {time.perf_counter() - wall:.1f} s")
    return 0


if __name__ == "__main__":
    run(main)
