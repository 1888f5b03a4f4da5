"""What eventsourcing 9.5.6 lacks: a subscription for SQLite (by polling), and compressed snapshots.

SQLite serialises commits database-wide, so rowid order is commit order and
polling for `rowid > last seen` never skips an event.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from typing import Any

from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import ListenNotifySubscription
from eventsourcing.sqlite import SQLiteApplicationRecorder

POLL_INTERVAL = 0.005


class PollingSQLiteSubscription(ListenNotifySubscription[SQLiteApplicationRecorder]):
    """Wakes the library's pull loop every few milliseconds instead of on NOTIFY."""

    def __init__(self, recorder: SQLiteApplicationRecorder, gt: int | None = None, topics: Sequence[str] = ()) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._poll_thread = threading.Thread(target=self._poll, name="sqlite-subscription-poll", daemon=True)
        self._poll_thread.start()

    def _poll(self) -> None:
        while not self._has_been_stopped:
            self._has_been_notified.set()
            threading.Event().wait(POLL_INTERVAL)

    def __exit__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._poll_thread.join()


class PollingSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """The SQLite recorder, plus `subscribe()` so projection runners work on it."""

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> PollingSQLiteSubscription:  # type: ignore[override]
        return PollingSQLiteSubscription(self, gt=gt, topics=topics)


class SnapshotCompressor(ZlibCompressor):
    """Snapshots are compressed (zlib, its fastest level), whatever MEMBERSHIP_EVENT_COMPRESSION says: a
    100,000-member organization's state is 20 MB of JSON columns, which compress about fourfold. Snapshots
    stored before, plain JSON, still read as they are (JSON starts with "{", a zlib stream never does)."""

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, 1)

    def decompress(self, data: bytes) -> bytes:
        return data if data[:1] == b"{" else zlib.decompress(data)
