"""The current request's view of the service: its parts, the clock, read-your-writes."""

from __future__ import annotations

from datetime import datetime

from flask import current_app

from api.bootstrap import Services
from membership import Receipt
from projections import store

READ_YOUR_WRITES_TIMEOUT_S = 5.0


def services() -> Services:
    return current_app.extensions["membership"]  # type: ignore[no-any-return]


def utc_now() -> datetime:
    """The application's clock (tests may set it), so expiry reads agree with the domain."""
    return services().organizations.clock()


def settled(receipt: Receipt) -> Receipt:
    """Wait until every read model includes the command, so any following read shows it (503 past a timeout)."""
    store.wait_for(services().read_db, receipt.position, timeout=READ_YOUR_WRITES_TIMEOUT_S)
    return receipt
