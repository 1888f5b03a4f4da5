"""`ocore member ...`: list, invite, change roles, remove, leave, transfer, bulk operations."""

from __future__ import annotations

from typing import IO, Any

import click

from ocore import output
from ocore.cli import ALL, LIMIT, F, api, global_options, main, paged, show
from ocore.client import Client
from ocore.jobs_commands import finish_watch


@main.group()
def member() -> None:
    """Members of the active organization."""


@member.command("list")
@click.option("--role", help="Only members with this role (id or name).")
@click.option("--search", help="Search in e-mail and name.")
@LIMIT
@ALL
@global_options
def member_list(role: str | None, search: str | None, limit: int | None, follow: bool) -> None:
    """Members, oldest first."""
    data = paged("/api/members", "members", follow, role=role, q=search, limit=limit)
    show(data, output.lister("members", output.MEMBERS))


@member.command("invite")
@click.option("--email", required=True, help="The invitee's e-mail address.")
@click.option("--role", required=True, help="Role id or name granted on acceptance.")
@click.option("--expires-in-days", type=int, help="Days until the invitation expires (server default 7).")
@global_options
def member_invite(email: str, role: str, expires_in_days: int | None) -> None:
    """Invite someone by e-mail."""
    client = api()
    body = {"email": email, "roleId": client.resolve_role(role), "expiresInDays": expires_in_days}
    data = client.request("POST", "/api/members/invite", body={k: v for k, v in body.items() if v is not None})
    show(data, output.invited)


@member.command("update-role")
@click.argument("member_id", metavar="MEMBER")
@click.option("--role", required=True, help="The new role (id or name).")
@global_options
def member_update_role(member_id: str, role: str) -> None:
    """Change a member's role (MEMBER: id or e-mail); it applies on their next request."""
    client = api()
    target = client.resolve_member(member_id)
    data = client.request("PUT", f"/api/members/{target}/role", body={"roleId": client.resolve_role(role)})
    show(data, output.role_changed)


@member.command("remove")
@click.argument("member_id", metavar="MEMBER")
@global_options
def member_remove(member_id: str) -> None:
    """Remove a member (MEMBER: id or e-mail); they lose access at once."""
    client = api()
    show(client.request("DELETE", f"/api/members/{client.resolve_member(member_id)}"), output.message)


@member.command("leave")
@global_options
def member_leave() -> None:
    """Leave the active organization (an Owner must transfer ownership first)."""
    show(api().request("POST", "/api/members/leave"), output.message)


@member.command("transfer-ownership")
@click.argument("member_id", metavar="MEMBER")
@global_options
def member_transfer_ownership(member_id: str) -> None:
    """Make another member (id or e-mail) the Owner; you become an Admin."""
    client = api()
    show(client.request("POST", f"/api/members/{client.resolve_member(member_id)}/transfer-ownership"), output.message)


def bulk_options(function: F) -> F:
    """The ids (arguments or --from-file), --wait and --idempotency-key, then the global options."""
    function = global_options(function)
    for option in reversed([
        click.argument("member_ids", nargs=-1, metavar="[MEMBER_ID]..."),
        click.option("--from-file", type=click.File("r"), help="Read member ids from a file (one per line; - is stdin)."),
        click.option("--wait", is_flag=True, help="Draw a progress bar until the job ends; exit 1 unless it succeeded."),
        click.option("--idempotency-key", help="Retrying with the same key returns the same job."),
    ]):  # fmt: skip
        function = option(function)
    return function


@member.command("bulk-update-role")
@click.option("--role", required=True, help="The new role (id or name).")
@bulk_options
def member_bulk_update_role(
    role: str, member_ids: tuple[str, ...], from_file: IO[str] | None, wait: bool, idempotency_key: str | None
) -> None:
    """Change the role of many members, as a background job."""
    client = api()
    body = {"memberIds": read_ids(member_ids, from_file), "roleId": client.resolve_role(role)}
    start_job(client, "/api/members/bulk/role", body, idempotency_key, wait)


@member.command("bulk-remove")
@bulk_options
def member_bulk_remove(
    member_ids: tuple[str, ...], from_file: IO[str] | None, wait: bool, idempotency_key: str | None
) -> None:
    """Remove many members, as a background job."""
    start_job(api(), "/api/members/bulk/remove", {"memberIds": read_ids(member_ids, from_file)}, idempotency_key, wait)


def read_ids(arguments: tuple[str, ...], file: IO[str] | None) -> list[str]:
    """Member ids from the arguments or from a file (blank lines and # comments ignored), not both."""
    if bool(arguments) == bool(file):
        raise click.UsageError("give member ids as arguments or with --from-file (one of the two)")
    if file is None:
        return list(arguments)
    lines = (line.split("#", 1)[0].replace(",", " ") for line in file)
    return [word for line in lines for word in line.split()]


def start_job(client: Client, path: str, body: dict[str, Any], key: str | None, wait: bool) -> None:
    headers = {"Idempotency-Key": key} if key else None
    job = client.request("POST", path, body=body, headers=headers)["job"]
    if wait:
        finish_watch(client, job)
    else:
        show({"job": job}, output.job_started)


# -- jobs -----------------------------------------------------------------------------------------------------------
