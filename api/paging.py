"""Keyset-paged lists: a cursor the API did not make is a 400, never an empty page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from api.errors import ApiError


@contextmanager
def checked_cursor() -> Iterator[None]:
    """Turn the queries' ValueError for a forged or foreign cursor into 400 `invalid_cursor`."""
    try:
        yield
    except ValueError:
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.") from None
