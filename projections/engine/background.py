"""The loop every background duty shares: do work while there is some, then sleep until woken."""

from __future__ import annotations

import logging
import random
import threading
from abc import ABC, abstractmethod
from typing import ClassVar

from membership import Organizations
from projections.engine.outages import is_transient

_RANDOM = random.Random()  # noqa: S311 -- its own generator, not the module's shared one (see membership.application)

log = logging.getLogger(__name__)
FIRST_RETRY_S = 0.1
MAX_RETRY_S = 5.0  # after an outage, work resumes within this of the database answering again


class BackgroundLoop(ABC):
    """Runs `run_once` in a daemon thread; a save in this process wakes it at once (if `wakes_on_save`)."""

    name = "background"
    poll_interval_s = 0.25
    # False for duties that need not follow each save: they look every poll_interval_s instead, and leave
    # the interpreter to the requests and the projections meanwhile.
    wakes_on_save: ClassVar[bool] = True
    # After a round that did work, a pause before the next: the work arriving meanwhile is then done in one
    # round (one set of statements) instead of one round per save. For duties nobody waits on to the millisecond.
    pause_after_work_s: ClassVar[float] = 0.0

    def __init__(self, organizations: Organizations) -> None:
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        if self.wakes_on_save:
            organizations.save_listeners.append(self._saved)

    @abstractmethod
    def run_once(self) -> int:
        """Do one round of work; return how much was done (0 when idle)."""

    def _saved(self, position: int) -> None:
        # A save of this loop's own (the mailer recording an outcome, a job applying items) is work it has
        # just done, not work for it: waking for it would cost a round that finds nothing.
        if threading.current_thread() is not self._thread:
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.request_stop()
        self.join()

    def request_stop(self) -> None:
        """Ask the loop to end after its current round (several loops then stop side by side)."""
        self._stop.set()
        self._wake.set()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=60)

    def run_forever(self) -> None:
        """Until stop(): a failing round (or wait) is logged and retried after a growing pause, never fatal.

        An outage (the database restarting or unreachable) is a warning: it heals by itself, and the
        loop carries on as soon as the database answers again.
        """
        failures = 0
        while not self._stop.is_set():
            try:
                if not self.run_once():
                    self.idle()
                elif self.pause_after_work_s:
                    self._stop.wait(self.pause_after_work_s)
                failures = 0
            except Exception as error:
                failures += 1
                self.recover(error)
                delay = min(FIRST_RETRY_S * 2 ** (failures - 1), MAX_RETRY_S) * _RANDOM.uniform(0.8, 1.2)
                if is_transient(error):
                    log.warning("%s: the database is unavailable (%s); retrying in %.1f s", self.name, error, delay)
                else:
                    log.exception("%s: a round failed; retrying in %.1f s", self.name, delay)
                self._stop.wait(delay)

    def idle(self) -> None:
        self._wake.wait(self.poll_interval_s)
        self._wake.clear()

    def recover(self, error: Exception) -> None:  # noqa: B027 -- a hook: most loops have nothing to drop
        """After a failed round: drop whatever the failure may have broken (e.g. a connection)."""
