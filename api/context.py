"""The current request's view of the service: its parts and the clock."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:  # the service package builds the parts; the API only uses them
    from service.bootstrap import Services


def services() -> Services:
    return current_app.extensions["membership"]  # type: ignore[no-any-return]


def utc_now() -> datetime:
    """The application's clock (tests may set it), so expiry reads agree with the domain."""
    return services().organizations.clock()
