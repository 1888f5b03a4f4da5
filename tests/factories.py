"""What every layer's tests build: people no other test uses, and the one test clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from membership import Actor


def new_actor(label: str = "user") -> Actor:
    """A person no other test uses: a unique user id and e-mail, named after `label`."""
    suffix = uuid4().hex[:10]
    return Actor(user_id=f"{label}-{suffix}", email=f"{label}.{suffix}@example.com", name=label.title())


class Clock:
    """The application's clock in tests (`Organizations.clock`, the mailer's `now`).

    Frozen at `start` when one is given (tests comparing exact timestamps), else real time; either way
    `advance` moves it forward (to expire invitations, links and leases).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return (self.start or datetime.now(UTC)) + self.offset

    @property
    def now(self) -> datetime:
        return self()

    def advance(self, **delta: float) -> datetime:
        self.offset += timedelta(**delta)
        return self()
