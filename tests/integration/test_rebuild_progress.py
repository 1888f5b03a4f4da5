"""Rebuild reporting: shares dealt by event counts, each share's progress in `projections status`, and a
resumed rebuild whose progress bar ends at 100 % and whose log names where it really resumes."""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from uuid import UUID, uuid4

import pytest
from click.testing import CliRunner

from projections.engine import tracking
from projections.engine.catalog import PROJECTIONS
from projections.engine.eventlog import count_by_aggregate, read_batch
from projections.engine.parallel import deal, share_events
from projections.engine.rebuild import Rebuild
from service.bootstrap import Services
from service.cli import main
from tests.conftest import TEST_SECRET_KEY
from tests.helpers import busy_team, generation_rows
from tests.integration.test_kill_and_resume import REBUILD, crowd, kill_when, start

POSTGRES_ONLY = pytest.mark.parametrize("store", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
BAR = re.compile(r"(\d+)%\|[^|\n\r]*\| (\d+)/(\d+)")  # tqdm: "rebuild audit: 100%|#####| 2250/2250 [...]"


def cli(store: str, *args: str) -> tuple[int, str, str]:
    """The `membership` operator commands, as an operator runs them."""
    result = CliRunner().invoke(
        main, list(args), env={"MEMBERSHIP_DATABASE_URL": store, "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY}
    )
    return result.exit_code, result.stdout, result.stderr


def final_bar(stderr: str) -> tuple[int, int, int]:
    """The percent, count and total the progress bar showed last."""
    shown = BAR.findall(stderr)
    assert shown, stderr
    percent, count, total = shown[-1]
    return int(percent), int(count), int(total)


def events_of(services: Services, after: int, upto: int) -> dict[UUID, int]:
    """Events per aggregate in (after, upto], counted one notification at a time (not by the GROUP BY)."""
    counts: dict[UUID, int] = {}
    position = after
    while notifications := [n for n in read_batch(services.organizations, position, 100) if n.id <= upto]:
        for notification in notifications:
            aggregate = UUID(str(notification.originator_id))
            counts[aggregate] = counts.get(aggregate, 0) + 1
        position = notifications[-1].id
    return counts


def two_crowds_and_small_teams(services: Services, large: tuple[int, int], small: int) -> tuple[UUID, UUID]:
    first, _ = crowd(services, large[0])
    for _ in range(small):
        busy_team(services, size=6)
    second, _ = crowd(services, large[1])
    return first, second


# -- the deal ------------------------------------------------------------------------------------------------
def test_the_two_largest_aggregates_go_to_different_shares_and_the_shares_balance() -> None:
    large = {uuid4(): 1000, uuid4(): 900}
    small = {uuid4(): size for size in (40, 35, 30, 30, 25, 20, 10, 5)}
    counts = {**large, **small}

    dealt = deal(counts, 2)

    assert {dealt[aggregate] for aggregate in large} == {0, 1}
    loads = share_events(counts, dealt, 2)
    assert sum(loads) == sum(counts.values()) and abs(loads[0] - loads[1]) <= max(small.values())
    shuffled = list(counts.items())
    random.Random(7).shuffle(shuffled)
    assert deal(dict(shuffled), 2) == dealt  # the same counts, in any order: the same deal


def test_events_are_counted_per_aggregate_and_dealt_into_balanced_shares(services: Services) -> None:
    first, second = two_crowds_and_small_teams(services, (300, 280), small=3)
    latest = services.organizations.recorder.max_notification_id()
    assert latest is not None
    middle = latest // 2

    assert count_by_aggregate(services.organizations, 0, latest) == events_of(services, 0, latest)
    assert count_by_aggregate(services.organizations, middle, latest) == events_of(services, middle, latest)

    counts = count_by_aggregate(services.organizations, 0, latest)
    dealt = deal(counts, 2)
    assert dealt[first] != dealt[second]
    loads = share_events(counts, dealt, 2)
    smallest_crowd_out = max(count for aggregate, count in counts.items() if aggregate not in (first, second))
    assert abs(loads[0] - loads[1]) <= smallest_crowd_out
    with services.read_db.transaction() as cursor:  # the deal kept for a resume reads back the same
        tracking.insert_share_aggregates(services.read_db, cursor, "audit", 99, dealt)
    with services.read_db.snapshot() as cursor:
        assert tracking.share_aggregates(services.read_db, cursor, "audit", 99) == dealt


# -- status ----------------------------------------------------------------------------------------------------
def interrupted(services: Services, names: list[str]) -> Rebuild:
    """A rebuild of `names` stopped after its first batch (a building generation left behind)."""
    rebuild = Rebuild(services.organizations, services.read_db, names, batch_size=10, retired_grace_s=0)
    rebuild.on_progress = lambda _: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        rebuild.run()
    return rebuild


def test_status_shows_each_share_of_a_generation_filled_in_parallel(store: str, services: Services) -> None:
    busy_team(services)
    services.runner.catch_up()  # type: ignore[union-attr]
    interrupted(services, ["roles"])
    latest = services.organizations.recorder.max_notification_id()
    assert latest is not None
    shares = [tracking.ShareProgress(0, 2, 30, latest, 40, 30), tracking.ShareProgress(1, 2, 20, latest, 25, 5)]
    with services.read_db.transaction() as cursor:  # as a parallel fill leaves them
        tracking.insert_shares(services.read_db, cursor, "roles", 2, shares)

    code, out, _ = cli(store, "projections", "status", "--json")

    assert code == 0
    (roles,) = [row for row in json.loads(out)["projections"] if row["name"] == "roles" and row["generation"] == 2]
    assert (roles["state"], roles["position"], roles["lag"]) == ("building", 20, latest - 20)  # the slowest share's
    assert [(s["part"], s["position"], s["applied"], s["events"], s["percent"]) for s in roles["shares"]] == [
        (0, 30, 30, 40, 75.0),
        (1, 20, 5, 25, 20.0),
    ]
    code, out, _ = cli(store, "projections", "status")
    assert code == 0
    assert f"share 1/2: position 30 of {latest}, 30 of 40 events (75 %)" in out
    assert f"share 2/2: position 20 of {latest}, 5 of 25 events (20 %)" in out


def test_a_resumed_rebuild_ends_at_100_percent_and_logs_where_it_resumes(
    store: str, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    busy_team(services)
    services.runner.catch_up()  # type: ignore[union-attr]
    stopped_at = interrupted(services, ["audit"]).start_position()
    assert stopped_at > 0
    latest = services.organizations.recorder.max_notification_id()

    with caplog.at_level(logging.INFO, logger="projections.engine.rebuild"):
        code, out, err = cli(store, "projections", "rebuild", "audit", "--grace", "0")

    assert code == 0 and "rebuilt: audit (generation 2)" in out
    assert final_bar(err) == (100, latest, latest)
    assert f"rebuild of 'audit' resumes at position {stopped_at}" in caplog.text


# -- a parallel fill killed, looked at, resumed ----------------------------------------------------------------
def shares_of(services: Services, name: str, generation: int = 2) -> list[tracking.ShareProgress]:
    with services.read_db.snapshot() as cursor:
        return tracking.shares(services.read_db, cursor, name, generation)


def mid_fill(services: Services) -> bool:
    shares = shares_of(services, "audit")
    return len(shares) == 2 and all(s.applied > 0 for s in shares) and any(s.applied < (s.events or 0) for s in shares)


def settled(services: Services) -> list[tracking.ShareProgress]:
    """The shares once their processes have noticed that the rebuild which started them is gone."""
    seen, deadline = shares_of(services, "audit"), time.monotonic() + 30
    while True:
        time.sleep(1)  # a share's process looks for its parent before each of its (here one-event) steps
        now = shares_of(services, "audit")
        if now == seen:
            return now
        assert time.monotonic() < deadline, "the shares' processes keep going"
        seen = now


@POSTGRES_ONLY
def test_a_killed_parallel_fill_shows_true_progress_and_resumes_to_100_percent(
    store: str, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = two_crowds_and_small_teams(services, (700, 660), small=4)
    services.runner.catch_up()  # type: ignore[union-attr]
    target = services.organizations.recorder.max_notification_id()
    assert target is not None

    kill_when(start(store, sys.executable, "-c", REBUILD, "parallel"), lambda: mid_fill(services))

    killed = settled(services)
    # Dealt by events: the crowds apart, the shares within a small team of each other, all events counted.
    with services.read_db.snapshot() as cursor:
        dealt = tracking.share_aggregates(services.read_db, cursor, "audit", 2)
    assert dealt[first] != dealt[second]
    counts = count_by_aggregate(services.organizations, 0, target)
    assert [s.events for s in killed] == share_events(counts, dealt, 2)
    assert sum(s.events or 0 for s in killed) == target and {s.target for s in killed} == {target}
    teams = [count for aggregate, count in counts.items() if aggregate not in (first, second)]
    assert abs((killed[0].events or 0) - (killed[1].events or 0)) <= max(teams)
    for share in killed:  # applied: exactly the share's events up to its position
        upto = count_by_aggregate(services.organizations, 0, share.position)
        assert share.applied == sum(count for aggregate, count in upto.items() if dealt[aggregate] == share.part)

    code, out, _ = cli(store, "projections", "status", "--json")
    (audit,) = [row for row in json.loads(out)["projections"] if row["name"] == "audit" and row["state"] == "building"]
    slowest = min(s.position for s in killed)
    assert code == 0 and audit["position"] == slowest > 0
    assert [(s["position"], s["applied"], s["events"], s["percent"]) for s in audit["shares"]] == [
        (s.position, s.applied, s.events, round(100 * s.applied / (s.events or 1), 1)) for s in killed
    ]
    _, out, _ = cli(store, "projections", "status")
    for s in killed:
        assert f"share {s.part + 1}/2: position {s.position} of {target}, {s.applied:,} of {s.events:,} events" in out

    busy_team(services, size=3)  # a new organization, after the fill's target: the catch-up's
    services.runner.catch_up()  # type: ignore[union-attr]
    live = {name: generation_rows(services, name, 1) for name in ("audit", "members")}
    latest = services.organizations.recorder.max_notification_id()
    with caplog.at_level(logging.INFO, logger="projections.engine.rebuild"):
        code, out, err = cli(store, "projections", "rebuild", "audit", "members", "--grace", "0", "--workers", "2")

    assert code == 0 and "rebuilt: audit (generation 2), members (generation 2)" in out
    assert final_bar(err) == (100, latest, latest)  # every event once: the shares', then those after the target
    assert f"rebuild of 'audit' resumes at position {slowest} (its slowest share" in caplog.text
    assert f"filling audit, members with 2 processes up to position {target} " in caplog.text
    assert {name: generation_rows(services, name, 2) for name in ("audit", "members")} == live
    assert shares_of(services, "audit") == []


@POSTGRES_ONLY
def test_shares_left_before_they_were_balanced_resume_dealt_by_the_last_byte(
    store: str, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        busy_team(services, size=6)
    services.runner.catch_up()  # type: ignore[union-attr]
    live = generation_rows(services, "roles", 1)
    interrupted(services, ["roles"])
    with services.read_db.transaction() as cursor:  # as the release before left an interrupted fill: no target
        cursor.execute("UPDATE projection_generations SET position = 0 WHERE name = 'roles' AND generation = 2")
        for table in PROJECTIONS["roles"](2).table_names.values():  # nothing applied yet: the shares start at 0
            cursor.execute(f"DELETE FROM {table}")
        tracking.insert_shares(
            services.read_db, cursor, "roles", 2, [tracking.ShareProgress(part, 2, 0, None, None) for part in (0, 1)]
        )
    latest = services.organizations.recorder.max_notification_id()
    assert latest is not None
    by_byte = [0, 0]
    for aggregate, count in count_by_aggregate(services.organizations, 0, latest).items():
        by_byte[aggregate.bytes[15] % 2] += count

    rebuild = Rebuild(
        services.organizations, services.read_db, ["roles"], retired_grace_s=0, database=services.settings.database,
        workers=3,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="projections.engine.rebuild"):
        assert rebuild.run() == {"roles": 2}

    assert "rebuild of 'roles' resumes at position 0 (its slowest share" in caplog.text
    shares = f"(shares of {by_byte[0]:,}, {by_byte[1]:,} events)"
    assert f"filling roles with 2 processes up to position {latest} {shares}" in caplog.text
    assert generation_rows(services, "roles", 2) == live
