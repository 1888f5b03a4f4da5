"""Read-side benchmark: how fast do the read models catch up, rebuild and show a command's effect?

    .venv/bin/python -m benchmarks.projections                      # 1,000,000 events
    .venv/bin/python -m benchmarks.projections --events 200000 --profile-events 0
    .venv/bin/python -m benchmarks.projections --database-url postgresql://...   # an existing, empty database

Seeds the event store on PostgreSQL with realistic organizations (invitations
accepted, cancelled and resent, joins by link, role changes, removals,
departures, custom roles), built through the domain with explicit times and
saved many organizations per transaction. No projection runs while seeding.
Then, in one process, it measures (all in events/s unless noted):

  1. raw read of the event store (`select_notifications`, 5,000 per call), without
     and with decoding to domain events -- the latter is the baseline of the ratios;
  2. the eventsourcing library's own `ProjectionRunner` (one transaction per event)
     over the first --sample events, with a trivial view of one row per event;
  3. the service's live runner catching up in batches (projections.engine.runner) over the
     first --catch-up-events, and the full blue/green rebuild of every projection
     (projections.engine.rebuild, as `membership projections rebuild` runs it: one process
     per CPU up to 4, each filling one share of the organizations) with its phases.
     Its rate is counted until the last projection is switched (the new tables are
     live); the end-to-end figure adds the readers' grace period it then sleeps
     (5 s, idle) and the drop of the old tables;
  4. command-to-visible latency: `invite_member` then `projections.engine.store.wait_for`
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

The seeding is in `benchmarks.projections_seed`, the measured stages in `benchmarks.projections_stages`;
this module runs them and prints the report.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import os
import random
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack

from benchmarks.harness import (
    database_line,
    load_average,
    p95,
    print_header_line,
    rate,
    run,
    settings_for,
    start_postgres,
    versions_line,
)
from benchmarks.projections_seed import seed
from benchmarks.projections_stages import (
    READ_BATCH,
    TimedRebuild,
    full_rebuild,
    library_runner_rate,
    live_catch_up,
    measure_latency,
    partial_rebuild,
    profile_report,
    read_all,
    timed,
)
from membership.application import Organizations
from projections.engine.catalog import PROJECTIONS
from projections.engine.rebuild import default_workers
from service.bootstrap import build_services

REBUILD_TARGET_RATE = 20_000  # events/s
REBUILD_TARGET_RATIO = 0.40  # of the raw read-and-decode rate
LATENCY_TARGET_MS = 15.0  # median, command to visible


def last_position(app: Organizations) -> int:
    return app.recorder.max_notification_id() or 0


CODECS = {
    "none": {},
    "zlib": {"MEMBERSHIP_EVENT_COMPRESSION": "zlib"},
    "aes": {"MEMBERSHIP_EVENT_CIPHER_KEY": base64.b64encode(os.urandom(32)).decode()},
    "aes+zlib": {"MEMBERSHIP_EVENT_CIPHER_KEY": base64.b64encode(os.urandom(32)).decode(),
                 "MEMBERSHIP_EVENT_COMPRESSION": "zlib"},
}  # fmt: skip


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
    parser.add_argument(
        "--event-codec", choices=sorted(CODECS), default="none",
        help="events stored encrypted (MEMBERSHIP_EVENT_CIPHER_KEY, a random key) and/or compressed\n"
        "(MEMBERSHIP_EVENT_COMPRESSION=zlib) (default: none)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.events < 2 or args.sample < 1 or args.latency_commands < 2 or args.events_per_org < 10:
        parser.error("need --events >= 2, --sample >= 1, --latency-commands >= 2, --events-per-org >= 10")

    wall = time.perf_counter()
    with ExitStack() as stack:
        url = args.database_url or start_postgres(stack)
        var_dir = tempfile.mkdtemp(prefix="membership-bench-var.")  # local files never land in the repository
        stack.callback(shutil.rmtree, var_dir, ignore_errors=True)
        settings = settings_for(url, {"MEMBERSHIP_MAX_PENDING_INVITATIONS": "1000000", "MEMBERSHIP_VAR_DIR": var_dir,
                                      **CODECS[args.event_codec]})  # fmt: skip
        services = build_services(settings)
        stack.callback(services.close)
        app = services.organizations
        if last_position(app):
            print(f"note: the database already holds {last_position(app):,} events; figures include them")

        print_header_line("database", database_line(url, app))
        print_header_line("machine", f"{os.cpu_count()} CPUs, load average {load_average()} at the start")
        print_header_line("python", versions_line("eventsourcing", "psycopg"))
        print_header_line(
            "run",
            f"events {args.events:,}  sample {args.sample:,}  latency commands {args.latency_commands} "
            f"(+{args.latency_warmup} warm-up)  read/rebuild batch {READ_BATCH:,}  projections {', '.join(PROJECTIONS)}",
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
        decoded = timed("1b. raw read + decode (the mapper, each batch's keys in one query) -- the baseline", lambda: read_all(app, True))
        base = rate(*decoded)
        library = timed(
            f"2.  eventsourcing.projection.ProjectionRunner, one transaction per event, first {args.sample:,} events",
            lambda: library_runner_rate(settings, args.sample),
        )
        catch_up = None
        catch_up_events = min(args.catch_up_events, total)
        if catch_up_events > 0:
            catch_up = timed(
                f"3a. live runner (projections.engine.runner, 500 events per transaction) catching up from 0, "
                f"first {catch_up_events:,} events",
                lambda: live_catch_up(services, catch_up_events),
            )
        print(
            f"3b. full rebuild of all projections (projections.engine.rebuild, {default_workers()} processes, "
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
    run(main)
