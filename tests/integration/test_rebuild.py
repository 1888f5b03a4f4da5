"""Rebuilding a projection from the first event gives exactly what live updates gave,
while readers keep reading the current tables until the switch."""

from __future__ import annotations

import contextlib
import threading
import time
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from membership.exceptions import MembershipError
from projections.engine import store, tracking
from projections.engine.catalog import PROJECTIONS
from projections.engine.rebuild import Rebuild
from service.bootstrap import Services
from tests.factories import new_actor
from tests.helpers import busy_team, generation_rows, role_id, table_rows

ALL = sorted(PROJECTIONS)


def active_generations(services: Services) -> dict[str, int]:
    with services.read_db.snapshot() as cursor:
        return tracking.active_generations(services.read_db, cursor)


def snapshot_of_tables(services: Services) -> dict[str, dict[str, list[tuple[object, ...]]]]:
    return {name: generation_rows(services, name, gen) for name, gen in active_generations(services).items()}


def test_a_rebuild_produces_exactly_the_live_tables(services: Services) -> None:
    busy_team(services)
    services.runner.catch_up()
    live = snapshot_of_tables(services)

    generations = Rebuild(services.organizations, services.read_db, ALL, batch_size=7, retired_grace_s=0).run()

    assert generations == {name: 2 for name in ALL}
    assert snapshot_of_tables(services) == live


def test_a_parallel_rebuild_produces_exactly_the_live_tables(
    services: Services, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(4):  # several organizations, so that both shares get some
        busy_team(services, size=6)
    services.runner.catch_up()
    live = snapshot_of_tables(services)

    rebuild = Rebuild(
        services.organizations, services.read_db, ALL, batch_size=7, retired_grace_s=0, database=services.settings.database,
        workers=2, parallel_min_events=0,
    )  # fmt: skip
    with caplog.at_level("INFO", logger="projections.engine.rebuild"):
        assert rebuild.run() == {name: 2 for name in ALL}

    assert snapshot_of_tables(services) == live
    parallel = any("with 2 processes" in message for message in caplog.messages)
    assert parallel == store.startswith("postgresql")  # SQLite has one writer: it rebuilds in this process
    assert rebuild.start_position() == 0  # no shares or building generations left


def test_a_parallel_rebuild_stays_in_process_below_its_threshold(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    busy_team(services)
    services.runner.catch_up()
    live = snapshot_of_tables(services)
    rebuild = Rebuild(
        services.organizations, services.read_db, ALL, retired_grace_s=0, database=services.settings.database, workers=2
    )
    with caplog.at_level("INFO", logger="projections.engine.rebuild"):
        rebuild.run()
    assert not any("processes" in message for message in caplog.messages)
    assert snapshot_of_tables(services) == live


def test_readers_use_the_old_tables_until_the_switch(services: Services) -> None:
    busy_team(services)
    services.runner.catch_up()
    count = "SELECT COUNT(*) FROM {audit_log}"
    before = table_rows(services, count)
    seen_during: list[object] = []
    rebuild = Rebuild(services.organizations, services.read_db, ["audit"], batch_size=5, retired_grace_s=0)
    rebuild.on_progress = lambda _: seen_during.append(table_rows(services, count))
    rebuild.run()
    assert seen_during and all(rows == before for rows in seen_during)
    assert table_rows(services, count) == before
    assert active_generations(services)["audit"] == 2


def test_the_live_runner_follows_the_switch_while_commands_continue(services: Services) -> None:
    services.runner.start()
    busy_team(services)
    app, owner = services.organizations, new_actor("owner")
    org = app.create_organization(owner, "During").organization_id
    rebuild = Rebuild(services.organizations, services.read_db, ["invitations"], batch_size=5, retired_grace_s=0)
    emails = [f"during-{n}@example.com" for n in range(8)]

    def invite_someone(_: int) -> None:  # commands keep arriving while the rebuild runs
        if emails:
            app.invite_member(org, owner, emails.pop(), role_id(app, org, "Viewer"))

    rebuild.on_progress = invite_someone
    rebuild.run()
    receipt = app.invite_member(org, owner, "after@example.com", role_id(app, org, "Viewer"))
    store.wait_for(services.read_db, receipt.position, timeout=10)
    invited = table_rows(services, "SELECT COUNT(*) FROM {invitations} WHERE organization_id = %s", str(org))
    with app.reading(org) as aggregate:
        assert invited == [(len(aggregate.invitations),)]
    assert not services.runner.broken


def test_an_interrupted_rebuild_resumes_where_it_stopped(services: Services) -> None:
    busy_team(services)
    services.runner.catch_up()
    live = snapshot_of_tables(services)

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    interrupted = Rebuild(
        services.organizations, services.read_db, ["members", "audit"], batch_size=10, retired_grace_s=0
    )
    interrupted.on_progress = interrupt
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert active_generations(services) == {name: 1 for name in ALL}  # readers never saw the half-built ones
    resumed = Rebuild(services.organizations, services.read_db, ["members", "audit"], batch_size=10, retired_grace_s=0)
    assert resumed.start_position() == 10 or resumed.start_position() > 0

    assert resumed.run() == {"audit": 2, "members": 2}
    assert snapshot_of_tables(services) == live


def test_restart_discards_an_interrupted_rebuild(services: Services) -> None:
    busy_team(services)
    services.runner.catch_up()
    live = snapshot_of_tables(services)
    interrupted = Rebuild(services.organizations, services.read_db, ["roles"], batch_size=3, retired_grace_s=0)
    interrupted.on_progress = lambda _: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert Rebuild(services.organizations, services.read_db, ["roles"], retired_grace_s=0).run(restart=True) == {
        "roles": 2
    }  # the discarded generation is dropped, its number reused
    assert snapshot_of_tables(services) == live


def test_unknown_projection_names_are_refused(services: Services) -> None:
    with pytest.raises(ValueError, match="unknown projections: nope"):
        Rebuild(services.organizations, services.read_db, ["members", "nope"])


# -- rebuild equals incremental, for random histories --------------------------------------------------------
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            ["invite", "accept", "cancel", "resend", "link", "redeem", "role", "remove", "leave", "newrole"]
        ),
        st.integers(min_value=0, max_value=5),
        st.integers(min_value=0, max_value=5),
    ),
    min_size=1,
    max_size=25,
)


class RandomTeam:
    """Drives one organization with random commands; refused commands are simply skipped."""

    def __init__(self, services: Services) -> None:
        self.app = services.organizations
        self.owner = new_actor("owner")
        self.org = self.app.create_organization(self.owner, "Random").organization_id
        self.people = [new_actor("u") for _ in range(6)]
        self.tokens: list[str] = []
        self.invitations: list[object] = []
        self.codes: list[str] = []
        self.roles = [role_id(self.app, self.org, name) for name in ("Admin", "Developer", "Viewer")]

    def run(self, operation: str, a: int, b: int) -> None:
        with contextlib.suppress(MembershipError):
            getattr(self, operation)(a, b)

    def invite(self, a: int, b: int) -> None:
        receipt = self.app.invite_member(self.org, self.owner, self.people[a].email, self.roles[b % len(self.roles)])
        self.tokens.append(receipt.secret or "")
        self.invitations.append(receipt.id)

    def accept(self, a: int, b: int) -> None:
        if self.tokens:
            self.app.accept_invitation(self.people[a], self.tokens[b % len(self.tokens)])

    def cancel(self, a: int, b: int) -> None:
        if self.invitations:
            self.app.cancel_invitation(self.org, self.owner, self.invitations[b % len(self.invitations)])  # type: ignore[arg-type]

    def resend(self, a: int, b: int) -> None:
        if self.invitations:
            receipt = self.app.resend_invitation(self.org, self.owner, self.invitations[b % len(self.invitations)])  # type: ignore[arg-type]
            self.tokens.append(receipt.secret or "")

    def link(self, a: int, b: int) -> None:
        self.codes.append(
            self.app.create_invite_link(self.org, self.owner, self.roles[b % len(self.roles)], a).secret or ""
        )

    def redeem(self, a: int, b: int) -> None:
        if self.codes:
            self.app.accept_invite_link(self.people[a], self.codes[b % len(self.codes)])

    def role(self, a: int, b: int) -> None:
        self.app.change_role(self.org, self.owner, self.member_id(a), self.roles[b % len(self.roles)])

    def remove(self, a: int, b: int) -> None:
        self.app.remove_member(self.org, self.owner, self.member_id(a))

    def leave(self, a: int, b: int) -> None:
        self.app.leave(self.org, self.people[a])

    def newrole(self, a: int, b: int) -> None:
        receipt = self.app.create_role(self.org, self.owner, f"Custom {len(self.roles)}", "", ["view:billing"])
        assert receipt.id is not None
        self.roles.append(receipt.id)

    def member_id(self, a: int) -> UUID:
        """The person's member id, or an unknown id when they are not a member (the command is refused)."""
        with self.app.reading(self.org) as org:
            found = org.member_by_user.get(self.people[a].user_id)
        return UUID(found) if found else uuid4()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, catch_up_every=st.integers(min_value=1, max_value=10))
def test_rebuild_equals_incremental_for_any_history(services: Services, operations: list, catch_up_every: int) -> None:
    team = RandomTeam(services)
    for step, (operation, a, b) in enumerate(operations):
        team.run(operation, a, b)
        if step % catch_up_every == 0:
            services.runner.catch_up()  # live updates arrive in batches of every size
    services.runner.catch_up()
    live = snapshot_of_tables(services)

    Rebuild(services.organizations, services.read_db, ALL, batch_size=4, retired_grace_s=0).run()

    assert snapshot_of_tables(services) == live


def test_retired_tables_stay_readable_for_a_grace_period_then_go(services: Services) -> None:
    busy_team(services)
    services.runner.catch_up()
    rebuild = Rebuild(services.organizations, services.read_db, ["roles"], retired_grace_s=0.5)
    thread = threading.Thread(target=rebuild.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while "retired" not in {g.state for g in generations_of(services, "roles")}:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        old = generation_rows(services, "roles", 1)  # a reader still on generation 1 can finish
        assert old["roles"] and active_generations(services)["roles"] == 2
    finally:
        thread.join()
    assert [g.state for g in generations_of(services, "roles")] == ["active"]
    with pytest.raises(Exception):  # noqa: B017 (the table is gone)
        generation_rows(services, "roles", 1)


def generations_of(services: Services, name: str) -> list[tracking.Generation]:
    with services.read_db.snapshot() as cursor:
        return [g for g in tracking.all_generations(services.read_db, cursor) if g.name == name]
