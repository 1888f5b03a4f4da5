"""What eventsourcing 9.5.6 lacks for SQLite: a subscription (by polling).

SQLite serialises commits database-wide, so rowid order is commit order and
polling for `rowid > last seen` never skips an event.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

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
