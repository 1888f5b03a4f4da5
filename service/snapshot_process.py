"""Organization snapshots taken in a child process, so their encoding never holds the interpreter lock
of the process that runs the projections (every command waits for those).

Measured with `benchmarks.http` on a 10,000-member organization: a snapshot taken in a thread stalled
the projection runner for a few hundred milliseconds at a time, and the invite p99 rose from about 0.4 s
to 1.1 s; at 100,000 members each stall lasts seconds. The child is started at the first snapshot due
(most processes never need one), is asked for one snapshot at a time over a pipe, and is started again
if it dies. It ends when its parent does: the pipe closes.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from service.settings import Settings

log = logging.getLogger(__name__)
# "spawn": a fresh interpreter; forking a process that runs threads (requests, pools) copies their locks.
CONTEXT = multiprocessing.get_context("spawn")


class SnapshotProcess:
    """`take(organization_id, version)` for SnapshotTaker, done in a child process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._closed = False
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def take(self, organization_id: object, version: int) -> bool:
        """Whether the child stored the snapshot (False: another worker had); raises what the child met.
        A child found dead is replaced once, and the snapshot asked of the new one (taking it is idempotent)."""
        with self._lock:
            for attempt in (1, 2):
                connection = self._child()
                try:
                    connection.send((organization_id, version))
                    stored, error = connection.recv()
                    break
                except (EOFError, OSError) as lost:
                    self._discard()
                    if attempt == 2:
                        raise RuntimeError(f"the snapshot process ended while taking version {version}") from lost
        if error is not None:
            raise RuntimeError(f"the snapshot process could not take version {version}: {error}")
        return bool(stored)

    def close(self) -> None:
        """End the child, at once: a snapshot it is taking is abandoned (the next start takes it again)."""
        self._closed = True  # from now on no child is started
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()  # a `take` waiting for its answer reads the end of the pipe and returns
        with self._lock:
            self._discard()

    def _child(self) -> Connection:
        if self._closed:
            raise RuntimeError("the snapshot process is closed")
        if self._connection is None or self._process is None or not self._process.is_alive():
            self._discard()
            ours, theirs = CONTEXT.Pipe()
            process = CONTEXT.Process(target=serve, args=(self.settings, theirs), name="snapshots", daemon=True)
            process.start()
            theirs.close()  # only the child holds its end: its death closes the pipe
            self._process, self._connection = process, ours
            log.info("snapshots: taken in child process %s", process.pid)
        return self._connection

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.close()  # the child reads the end of its input and exits
        if self._process is not None:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._process = self._connection = None


def serve(settings: Settings, connection: Connection) -> None:
    """The child: take each requested snapshot and answer (stored, error), until the parent closes the pipe."""
    from service.bootstrap import build_organizations
    from workers.snapshots import take_snapshot

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which then ends this process
    organizations = build_organizations(settings)
    try:
        while True:
            try:
                organization_id, version = connection.recv()
            except (EOFError, OSError):
                return  # the parent is gone, or done with us
            try:
                answer: tuple[bool, str | None] = (take_snapshot(organizations, organization_id, version), None)
            except Exception as error:  # the parent logs it and retries in its next round
                answer = (False, f"{type(error).__name__}: {error}")
            try:
                connection.send(answer)
            except OSError:
                return  # the parent ended while we worked
    finally:
        organizations.close()
