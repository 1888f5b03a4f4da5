"""Settings > Roles: the system roles read-only; custom roles created, edited and deleted."""

from __future__ import annotations

from web.console import console_blueprint

bp = console_blueprint("roles_page", __name__)
