"""Group commit: commands on one organization that arrive while its previous save is in flight are decided one
after another on the same state and saved together, in one transaction.

Every command on an organization waits for the one before it anyway (its events follow the other's in the
organization's stream), and most of a command's cost is the save: a transaction, a commit, a wake-up of the
projection runner, the mailer and the other processes. Saved together, sixteen concurrent invitations cost
one of each, and the read models and the mailer then take them in one batch too.

Flat combining: the first command to arrive leads: it takes everything waiting for the organization (itself
included), runs the group and answers each command; then it hands the lead to the first command that arrived
meanwhile, or ends it. A command never waits for more than the group before it and its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

W = TypeVar("W")  # what a command is: the group runner's to interpret


@dataclass(eq=False)
class Pending(Generic[W]):
    """One command of a group: the runner answers it with `succeed` or `fail` (else the group's error)."""

    work: W
    result: Any = None
    error: BaseException | None = None
    answered: bool = False
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)

    def succeed(self, result: Any) -> None:
        self.result, self.error, self.answered = result, None, True

    def fail(self, error: BaseException) -> None:
        self.result, self.error, self.answered = None, error, True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit(Generic[W]):
    """`submit(key, work)` runs `work` in the next group for `key` and returns (or raises) its answer.

    `run_group(key, group)` must answer every command of the group; what it raises answers those it did not.
    """

    def __init__(self, run_group: Callable[[Hashable, list[Pending[W]]], None]) -> None:
        self._run_group = run_group
        self._lock = threading.Lock()
        self._waiting: dict[Hashable, list[Pending[W]]] = {}
        self._leading: set[Hashable] = set()

    def submit(self, key: Hashable, work: W) -> Any:
        me = Pending(work)
        with self._lock:
            self._waiting.setdefault(key, []).append(me)
            lead = key not in self._leading
            if lead:
                self._leading.add(key)
        if not lead:
            me._wake.wait()  # noqa: SLF001 -- answered, or handed the lead
            if me.answered:
                return me.outcome()
        self._lead(key)
        return me.outcome()

    def _lead(self, key: Hashable) -> None:
        with self._lock:
            group = self._waiting.pop(key)
        try:
            self._run_group(key, group)
        except BaseException as error:  # noqa: BLE001 -- it answers the group's unanswered commands
            for pending in group:
                if not pending.answered:
                    pending.fail(error)
        finally:
            for pending in group:
                if not pending.answered:  # a runner that forgot one: never leave a caller waiting
                    pending.fail(RuntimeError("the command was not run"))
                pending._wake.set()  # noqa: SLF001
            with self._lock:
                waiting = self._waiting.get(key)
                if waiting:
                    waiting[0]._wake.set()  # noqa: SLF001 -- not answered: it leads the next group
                else:
                    self._leading.discard(key)
