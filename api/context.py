"""The current request's view of the service: its parts and the clock."""

from __future__ import annotations

from datetime import datetime

from flask import current_app

from api.bootstrap import Services


def services() -> Services:
    return current_app.extensions["membership"]  # type: ignore[no-any-return]


def utc_now() -> datetime:
    """The application's clock (tests may set it), so expiry reads agree with the domain."""
    return services().organizations.clock()
