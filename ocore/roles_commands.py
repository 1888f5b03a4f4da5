"""`ocore role ...`, `ocore permission list` and `ocore audit log`."""

from __future__ import annotations

from typing import Any

import click

from ocore import output
from ocore.cli import ALL, LIMIT, api, global_options, main, paged, show
from ocore.client import MAX_PAGE


# -- roles, permissions, audit --------------------------------------------------------------------------------------
@main.group()
def role() -> None:
    """Roles: the system ones and your custom roles."""


@role.command("list")
@global_options
def role_list() -> None:
    """Roles with their member counts."""
    show(paged("/api/roles", "roles", True, limit=MAX_PAGE), output.lister("roles", output.ROLES))


PERMISSION = click.option("--permission", "-p", "permissions", multiple=True, help="A permission id (repeatable).")


@role.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the role is for.")
@PERMISSION
@global_options
def role_create(name: str, description: str, permissions: tuple[str, ...]) -> None:
    """Create a custom role with some of the permissions you hold."""
    body = {"name": name, "description": description, "permissionIds": list(permissions)}
    show(api().request("POST", "/api/roles", body=body), output.role_saved("Created"))


@role.command("update")
@click.argument("role_ref", metavar="ROLE")
@click.option("--name", help="A new name.")
@click.option("--description", help="A new description.")
@PERMISSION
@global_options
def role_update(role_ref: str, name: str | None, description: str | None, permissions: tuple[str, ...]) -> None:
    """Rename, describe or re-permission a custom ROLE (id or name); --permission replaces the list."""
    body: dict[str, Any] = {"name": name, "description": description, "permissionIds": list(permissions) or None}
    body = {k: v for k, v in body.items() if v is not None}
    if not body:
        raise click.UsageError("nothing to change: give --name, --description or --permission")
    client = api()
    show(client.request("PUT", f"/api/roles/{client.resolve_role(role_ref)}", body=body), output.role_saved("Updated"))


@role.command("delete")
@click.argument("role_ref", metavar="ROLE")
@global_options
def role_delete(role_ref: str) -> None:
    """Delete a custom ROLE (id or name) that nobody holds."""
    client = api()
    show(client.request("DELETE", f"/api/roles/{client.resolve_role(role_ref)}"), output.message)


@main.group()
def permission() -> None:
    """Permissions a role can hold."""


@permission.command("list")
@global_options
def permission_list() -> None:
    """Every permission id with its description."""
    data = api().request("GET", "/api/permissions", scoped=False)
    show(data, output.lister("permissions", output.PERMISSIONS))


@main.group()
def audit() -> None:
    """The organization's history."""


@audit.command("log")
@click.option("--type", "event_type", help="Only this event type, e.g. RoleChanged.")
@click.option("--actor", help="Only events by this user id or e-mail.")
@click.option("--since", help="From this ISO 8601 time.")
@click.option("--until", help="Up to this ISO 8601 time.")
@LIMIT
@ALL
@global_options
def audit_log(
    event_type: str | None, actor: str | None, since: str | None, until: str | None, limit: int | None, follow: bool
) -> None:
    """Events, newest first."""
    data = paged(
        "/api/audit-log", "events", follow, type=event_type, actor=actor, since=since, until=until, limit=limit
    )
    show(data, output.lister("events", output.EVENTS))
