"""What every CSV export of the read models shares (the audit log's, access reviews)."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell as a formula


def spreadsheet_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading ' before what it would run as a formula (OWASP)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
