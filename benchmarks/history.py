"""History benchmark: auditors' questions over HTTP against replaying the events, on PostgreSQL.

    .venv/bin/python -m benchmarks.history                          # 100,000 members; 100,000 events
    .venv/bin/python -m benchmarks.history --members 10000 --events 10000 --rounds 10

Seeds two organizations through the domain: one of `--members` members (joined through a link), and one of
200 members whose roles then change until it holds `--events` events (a long history). Runs the read models
to the end, then asks the API in-process (Flask's test client: server time, no network), for each
organization in turn: `GET /api/members?asOf=` (first page, as of the middle of its history), a member's
history, and an access review of `manage:members` over the past year; and times `membership audit replay
--at` (the same middle moment) beside them. Prints median and p95 (target: each question <= 50 ms).

Without --database-url a throwaway PostgreSQL (durability on) is started with `scripts/pg start` and removed
at exit. Figures only: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from uuid import uuid4

import jwt

from api.app import create_app
from benchmarks.console import timed
from benchmarks.harness import SeededOrg, database_line, p95, print_header_line, run, seed, settings_for, start_postgres
from membership import Organizations
from membership.organization import system_role_id
from projections.engine.runner import ProjectionRunner
from projections.history import organization_at
from service.bootstrap import build_services

JWT_SECRET = "bench-jwt-" + "s" * 32
TARGET_MS = 50.0
CHURN_MEMBERS = 200


def churn(app: Organizations, events: int) -> SeededOrg:
    """An organization of CHURN_MEMBERS members whose roles change, Viewer and Developer in turn, until it
    holds `events` events."""
    org = seed(app, CHURN_MEMBERS, 1, CHURN_MEMBERS, SeededOrg)
    roles = [system_role_id(org.id, "developer"), org.viewer_role_id]
    with app.reading(org.id) as live:
        members = [m.id for m in live.members.values() if m.user_id != org.owner.user_id]
        version = live.version
    n, started = 0, time.perf_counter()
    while version < events:
        with app.reading(org.id) as live:
            for _ in range(min(2000, events - version)):
                member = members[n % len(members)]
                live.change_role(org.owner, member, roles[(n // len(members)) % 2], datetime.now(UTC))
                n += 1
            app.save(live)
            version = live.version
        print(f"  history: {version:>9,} events  {time.perf_counter() - started:6.1f} s", flush=True)
    org.version = version
    return org


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an existing PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--members", type=int, default=100_000, help="members of the large organization")
    parser.add_argument("--events", type=int, default=100_000, help="events of the long-history organization")
    parser.add_argument("--rounds", type=int, default=20, help="requests of each kind")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.database_url or start_postgres(stack)
        services = build_services(settings_for(url, {"MEMBERSHIP_JWT_SECRET": JWT_SECRET}))
        stack.callback(services.close)
        app = services.organizations
        print_header_line("database", database_line(url, app))
        large = seed(app, args.members, 0, 5000, SeededOrg)
        long = churn(app, args.events)
        runner = ProjectionRunner(app, services.read_db)
        started = time.perf_counter()
        runner.catch_up()
        print(f"read models caught up in {time.perf_counter() - started:.1f} s\n")
        with services.read_db.transaction() as cursor:  # what autovacuum does within a minute of such a load
            cursor.execute("ANALYZE")
        client = create_app(services).test_client()
        year = {"permission": "manage:members", "from": (datetime.now(UTC) - timedelta(days=365)).isoformat(),
                "to": datetime.now(UTC).isoformat()}  # fmt: skip
        print(f"{'':<44}{'p50 ms':>8}{'p95':>8}  target")
        for label, org in ((f"{args.members:,}-member organization", large), (f"{long.version:,}-event organization",
                                                                               long)):  # fmt: skip
            events = list(app.events.get(org.id))  # type: ignore[attr-defined]
            middle = events[len(events) // 2].timestamp  # type: ignore[attr-defined]
            with app.reading(org.id) as live:
                member = next(m.id for m in live.members.values() if m.user_id != org.owner.user_id)
            token = jwt.encode({"sub": org.owner.user_id, "email": org.owner.email, "exp": int(time.time()) + 3600},
                               JWT_SECRET)  # fmt: skip
            headers = {"Authorization": f"Bearer {token}", "X-Organization-Id": str(org.id)}
            questions = {
                "asOf, first page": f"/api/members?{urlencode({'asOf': middle.isoformat()})}",
                "member history": f"/api/members/{member}/history",
                "access review, a year": f"/api/access-review?{urlencode(year)}",
            }
            times: dict[str, list[float]] = {name: [] for name in questions}
            for _ in range(2):
                for path in questions.values():
                    timed(client, path, headers)
            for _ in range(args.rounds):
                for name, path in questions.items():
                    times[name].append(timed(client, path, headers))
            replays = []
            for _ in range(3):
                replay_started = time.perf_counter()
                organization_at(app, org.id, middle)
                replays.append((time.perf_counter() - replay_started) * 1000)
            print(label)
            for name, values in times.items():
                met = statistics.median(values) <= TARGET_MS
                print(f"  {name:<42}{statistics.median(values):>8.1f}{p95(values):>8.1f}  {'MET' if met else 'NOT MET'}")
            print(f"  {'replay --at the same moment (in-process)':<42}{statistics.median(replays):>8.1f}"
                  f"{max(replays):>8.1f}  (the proof, beside)")  # fmt: skip
        print(f"(target: each question <= {TARGET_MS:.0f} ms p50; informational; run id {uuid4().hex[:6]})")
    return 0


if __name__ == "__main__":
    run(main)
