"""The loop every background duty shares: do work while there is some, then sleep until woken."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

from membership import Organizations

log = logging.getLogger(__name__)


class BackgroundLoop(ABC):
    """Runs `run_once` in a daemon thread; a save in this process wakes it at once."""

    name = "background"
    poll_interval_s = 0.25

    def __init__(self, organizations: Organizations) -> None:
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        organizations.save_listeners.append(lambda position: self._wake.set())

    @abstractmethod
    def run_once(self) -> int:
        """Do one round of work; return how much was done (0 when idle)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def run_forever(self) -> None:
        """Until stop(): a failing round is logged and retried after a pause, never fatal."""
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("%s: a round failed; retrying shortly", self.name)
                busy = 0
            if not busy:
                self.idle()

    def idle(self) -> None:
        self._wake.wait(self.poll_interval_s)
        self._wake.clear()
