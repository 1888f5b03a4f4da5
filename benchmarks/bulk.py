"""Bulk-job benchmark: how many members per second does a bulk role change handle?

    .venv/bin/python -m benchmarks.bulk                         # 1,000 and 10,000 members
    .venv/bin/python -m benchmarks.bulk --sizes 1000 --batch 500
    .venv/bin/python -m benchmarks.bulk --database-url postgresql://...   # an existing (empty) database

For each size, seeds an organization on PostgreSQL (members who joined through a
link), then times a bulk role change of every member: the request, then the job
run batch by batch as the worker runs it (`Organizations.process_job_batch`:
each batch's role changes and the job's progress in one transaction). The
baseline, measured in the same run, is the same change made one command per
member (`change_role`), as a client looping over the single endpoint would.

Without --database-url a throwaway PostgreSQL (durability on) is started with
`scripts/pg start` and removed at exit. Figures only: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from uuid import UUID

from benchmarks.harness import SeededOrg, database_line, print_header_line, run, seed, settings_for, start_postgres
from membership.application import Organizations
from membership.jobs import ROLE_CHANGE
from membership.organization import system_role_id
from membership.permissions import DEVELOPER, VIEWER
from service.bootstrap import build_organizations

TARGET_ITEMS_PER_S = 2000
BASELINE_COMMANDS = 300


def member_ids(app: Organizations, organization_id: UUID) -> list[UUID]:
    with app.reading(organization_id) as org:
        return [member.id for member in org.members.values() if not org.is_owner(member)]


def bulk_role_change(app: Organizations, organization_id: UUID, owner: object, batch: int) -> tuple[float, int]:
    """Seconds from request to finished job, and how many items succeeded."""
    ids = member_ids(app, organization_id)
    developer = system_role_id(organization_id, DEVELOPER.key)
    started = time.perf_counter()
    receipt, _ = app.request_bulk_job(organization_id, owner, ROLE_CHANGE, ids, developer)  # type: ignore[arg-type]
    assert receipt.id is not None
    job = app.process_job_batch(receipt.id, batch)
    while not job.is_finished:
        job = app.process_job_batch(receipt.id, batch)
    return time.perf_counter() - started, job.succeeded


def one_by_one(app: Organizations, organization_id: UUID, owner: object, count: int) -> float:
    """Items/s of the same change made with single commands (the baseline)."""
    ids = member_ids(app, organization_id)[:count]
    viewer = system_role_id(organization_id, VIEWER.key)
    started = time.perf_counter()
    for member_id in ids:
        app.change_role(organization_id, owner, member_id, viewer)  # type: ignore[arg-type]
    return len(ids) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an existing PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--sizes", default="1000,10000", help="members per organization, comma-separated")
    parser.add_argument("--batch", type=int, default=500, help="members per job batch (one transaction)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with ExitStack() as stack:
        url = args.database_url or start_postgres(stack)
        app = build_organizations(settings_for(url))
        stack.callback(app.close)
        print_header_line("database", database_line(url, app))
        print(f"job batch {args.batch} members per transaction; baseline: {BASELINE_COMMANDS} single role changes\n")
        rows = []
        for index, size in enumerate(sizes):
            org = seed(app, size + 1, index, 2000, SeededOrg)
            seconds, succeeded = bulk_role_change(app, org.id, org.owner, args.batch)
            baseline = one_by_one(app, org.id, org.owner, min(BASELINE_COMMANDS, size))
            rows.append((size, succeeded, seconds, succeeded / seconds, baseline))
        print(f"{'members':>8} {'changed':>8} {'seconds':>8} {'items/s':>9} {'single cmds/s':>14} {'bulk/single':>12}")
        for size, succeeded, seconds, rate, baseline in rows:
            print(
                f"{size:>8,} {succeeded:>8,} {seconds:>8.2f} {rate:>9,.0f} {baseline:>14,.0f} {rate / baseline:>11.1f}x"
            )
        worst = min(rate for *_, rate, _ in rows)
        verdict = "MET" if worst >= TARGET_ITEMS_PER_S else "NOT MET"
        print(f"\ntarget >= {TARGET_ITEMS_PER_S:,} items/s: slowest {worst:,.0f} items/s -> {verdict} (informational)")
        print(f"finished {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    return 0


if __name__ == "__main__":
    run(main)
