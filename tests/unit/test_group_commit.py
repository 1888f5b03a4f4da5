"""GroupCommit (membership.combining): concurrent commands on one key run in groups, each answered alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

import pytest

from membership.combining import GroupCommit, Pending


class Recorder:
    """A group runner that answers each command with its own work doubled, refuses odd numbers' negatives,
    and remembers the groups it ran (slowly, so that others arrive meanwhile)."""

    def __init__(self, pause: float = 0.01) -> None:
        self.groups: list[tuple[Hashable, list[int]]] = []
        self.pause = pause
        self.running: set[Hashable] = set()
        self.overlap = False
        self._lock = threading.Lock()

    def __call__(self, key: Hashable, group: list[Pending[int]]) -> None:
        with self._lock:
            self.overlap |= key in self.running
            self.running.add(key)
            self.groups.append((key, [p.work for p in group]))
        time.sleep(self.pause)
        for pending in group:
            if pending.work < 0:
                pending.fail(ValueError(f"refused {pending.work}"))
            else:
                pending.succeed(pending.work * 2)
        with self._lock:
            self.running.discard(key)


def submit_all(commit: GroupCommit[int], works: list[tuple[str, int]]) -> list[object]:
    barrier = threading.Barrier(len(works))

    def one(key_and_work: tuple[str, int]) -> object:
        barrier.wait()
        try:
            return commit.submit(*key_and_work)
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(len(works)) as pool:
        return list(pool.map(one, works))


def test_each_command_gets_its_own_answer_and_groups_form_while_one_runs() -> None:
    runner = Recorder()
    commit: GroupCommit[int] = GroupCommit(runner)
    works = [("a", n) for n in range(20)] + [("a", -1), ("b", 7), ("b", 8)]

    answers = submit_all(commit, works)

    assert answers == [n * 2 for n in range(20)] + ["refused -1", 14, 16]
    ran = sorted(w for _, group in runner.groups for w in group)
    assert ran == sorted(w for _, w in works)  # each command ran exactly once
    assert any(len(group) > 1 for _, group in runner.groups)  # they were grouped
    assert not runner.overlap  # one group at a time per key


def test_a_failing_group_answers_its_commands_with_the_failure_and_the_next_group_still_runs() -> None:
    calls = []

    def run(key: Hashable, group: list[Pending[int]]) -> None:
        calls.append([p.work for p in group])
        if len(calls) == 1:
            time.sleep(0.02)  # the others queue meanwhile
            raise ConnectionError("the database went away")
        for pending in group:
            pending.succeed(pending.work)

    commit: GroupCommit[int] = GroupCommit(run)
    failures: list[BaseException] = []

    def submit_first() -> None:
        try:
            commit.submit("k", 0)
        except ConnectionError as error:
            failures.append(error)

    first = threading.Thread(target=submit_first)
    first.start()
    time.sleep(0.005)
    later = submit_all(commit, [("k", n) for n in range(1, 6)])
    first.join()
    assert later == [1, 2, 3, 4, 5] and calls[0] == [0]
    assert [str(error) for error in failures] == ["the database went away"]


def test_a_command_the_runner_left_unanswered_is_not_left_waiting() -> None:
    commit: GroupCommit[int] = GroupCommit(lambda key, group: None)
    with pytest.raises(RuntimeError, match="not run"):
        commit.submit("k", 1)
    with pytest.raises(RuntimeError, match="not run"):  # and the key is free again
        commit.submit("k", 2)
