"""Console benchmark: server time of the console's pages against the JSON API's answers for the same data.

    .venv/bin/python -m benchmarks.console                        # a 100,000-member organization
    .venv/bin/python -m benchmarks.console --size 10000 --rounds 30
    .venv/bin/python -m benchmarks.console --database-url postgresql://...   # an existing (empty) database

Seeds an organization on PostgreSQL (members who joined through a link), runs its read models to the end,
then asks the same app, in-process through Flask's test client (server time, no network), for each pair
in turn, interleaved round by round: the Members page and `GET /api/members?limit=50`; a search; the
Members page filtered by role; and, where the console has it, the audit log page and `GET /api/audit-log`.
Prints the median and p95 of each and the page/API ratio (target: within 1.5x, page under 100 ms).

Without --database-url a throwaway PostgreSQL (durability on) is started with `scripts/pg start` and
removed at exit. Figures only: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack
from urllib.parse import quote

import jwt
from flask.testing import FlaskClient

from benchmarks.harness import SeededOrg, database_line, p95, print_header_line, run, seed, settings_for, start_postgres
from projections.engine.runner import ProjectionRunner
from service.bootstrap import build_services, wsgi_app

JWT_SECRET = "bench-jwt-" + "s" * 32
TARGET_RATIO = 1.5
TARGET_PAGE_MS = 100.0


def timed(client: FlaskClient, path: str, headers: dict[str, str] | None = None) -> float:
    """Server time of one GET in ms (in-process, no network); anything but 200 ends the benchmark."""
    started = time.perf_counter()
    response = client.get(path, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"GET {path}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an existing PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--size", type=int, default=100_000, help="members of the organization")
    parser.add_argument("--rounds", type=int, default=50, help="interleaved requests of each kind")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.database_url or start_postgres(stack)
        settings = settings_for(url, {"MEMBERSHIP_JWT_SECRET": JWT_SECRET}).served_at("127.0.0.1", 8000)
        services = build_services(settings)
        stack.callback(services.close)
        print_header_line("database", database_line(url, services.organizations))
        org = seed(services.organizations, args.size, 0, 5000, SeededOrg)
        services.runner = runner = ProjectionRunner(services.organizations, services.read_db)
        started = time.perf_counter()
        runner.catch_up()
        print(f"read models caught up in {time.perf_counter() - started:.1f} s\n")
        with services.read_db.transaction() as cursor:  # what autovacuum does within a minute of such a load
            cursor.execute("ANALYZE")
        app = wsgi_app(services)
        page_client, api_client = app.test_client(), app.test_client()
        owner = org.owner
        with page_client.session_transaction() as session:  # signed in, as the sign-in pages would leave it
            session["user"] = {"sub": owner.user_id, "email": owner.email, "name": owner.name}
            session["organization"] = str(org.id)
        token = jwt.encode({"sub": owner.user_id, "email": owner.email, "exp": int(time.time()) + 3600}, JWT_SECRET)
        api = {"Authorization": f"Bearer {token}", "X-Organization-Id": str(org.id)}
        search = quote("user4242")
        role = str(org.viewer_role_id)
        pairs = [
            ("members, first page", "/settings/members", "/api/members?limit=50"),
            ("search", f"/settings/members?q={search}", f"/api/members?limit=50&q={search}"),
            ("role filter", f"/settings/members?role={role}", f"/api/members?limit=50&role={role}"),
        ]
        if "audit_page.audit_log" in app.view_functions:
            pairs.append(("audit log", "/settings/audit-log", "/api/audit-log?limit=50"))
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(3):  # warm both (templates compiled, pools open)
            for _, page, endpoint in pairs:
                timed(page_client, page), timed(api_client, endpoint, api)
        for _ in range(args.rounds):
            for label, page, endpoint in pairs:
                times.setdefault((label, "page"), []).append(timed(page_client, page))
                times.setdefault((label, "api"), []).append(timed(api_client, endpoint, api))
        print(f"{args.size:,}-member organization, {args.rounds} interleaved requests of each, server time in ms")
        print(f"{'':<22}{'page p50':>10}{'p95':>8}{'API p50':>10}{'p95':>8}{'ratio':>8}  target")
        for label, _, _ in pairs:
            page_ms, api_ms = times[(label, "page")], times[(label, "api")]
            ratio = statistics.median(page_ms) / statistics.median(api_ms)
            met = ratio <= TARGET_RATIO and statistics.median(page_ms) < TARGET_PAGE_MS
            print(f"{label:<22}{statistics.median(page_ms):>10.1f}{p95(page_ms):>8.1f}{statistics.median(api_ms):>10.1f}"
                  f"{p95(api_ms):>8.1f}{ratio:>8.2f}  {'MET' if met else 'NOT MET'}")  # fmt: skip
        print(f"(targets: page/API <= {TARGET_RATIO}x and page p50 < {TARGET_PAGE_MS:.0f} ms; informational)")
    return 0


if __name__ == "__main__":
    run(main)
