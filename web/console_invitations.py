"""Settings > Members: inviting by e-mail, the invitations (with their e-mail's delivery), and invite links."""

from __future__ import annotations

from web.console import console_blueprint

bp = console_blueprint("invitations_page", __name__)
