"""Small pieces of markup the console's templates share (Jinja globals, see web.site).

Python rather than Jinja macros: a page of the audit log calls `when` fifty times, and a macro call costs
several times a function call.
"""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape


def when(moment: datetime) -> Markup:
    """A moment, readable and machine-readable (UTC)."""
    return Markup('<time datetime="{}">{} UTC</time>').format(moment.isoformat(), moment.strftime("%d %b %Y, %H:%M"))


def address(email: str) -> Markup:
    """An e-mail address that may wrap after its local part."""
    local, at, domain = email.rpartition("@")
    return Markup("{}<wbr>@{}").format(local, domain) if at else escape(email)
