"""Server processes on one store run the background work in one of them, and the others' commands are woken by
its commits; on both stores (each Services here stands for one server process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from service import bootstrap
from service.bootstrap import Services, build_services
from service.settings import Settings
from tests.helpers import assert_each_invite_visible_when_its_wait_returns


@pytest.fixture
def processes(store: str, settings_for: Callable[..., Settings]) -> Iterator[list[Services]]:
    made = [build_services(settings_for(store)) for _ in range(3)]
    yield made
    for services in made:
        services.close()


def running(processes: list[Services]) -> list[Services]:
    return [p for p in processes if p.runner is not None and p.runner._thread is not None]  # noqa: SLF001


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_one_process_runs_the_background_work_and_another_takes_over_when_it_ends(
    processes: list[Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap, "ELECTION_RETRY_S", 0.1)
    for services in processes:
        services.start_projections_in_one_process()
    wait_until(lambda: len(running(processes)) == 1)
    time.sleep(0.5)  # several rounds of the others' tries
    (leader,) = running(processes)

    leader.close()
    processes.remove(leader)
    wait_until(lambda: len(running(processes)) == 1)


def test_a_command_in_a_process_without_the_runner_is_visible_when_its_wait_returns(
    processes: list[Services],
) -> None:
    leader, follower, _ = processes
    leader.start_projections()
    assert_each_invite_visible_when_its_wait_returns(follower.organizations, follower, 10)
    # On PostgreSQL the runner's commits reached the follower by NOTIFY (SQLite: it polled).
    assert follower.read_db.progress.listening == (not follower.read_db.is_sqlite)
