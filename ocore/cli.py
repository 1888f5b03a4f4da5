"""`ocore`: manage an organization's members, invitations, roles and bulk jobs from the shell.

Every command takes `--url`, `--token`, `--org` and `--json`, before or after
the command name. Exit codes: 0 ok, 1 other failure, 2 usage, 3 authentication,
4 permission, 5 not found, 6 conflict or gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import click

from ocore import config, output
from ocore.client import Client, WatchInterruptedError
from ocore.output import echo_json, watch_job

F = Callable[..., Any]


# -- options shared by every command ------------------------------------------------------------------------------
def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value:  # a flag given anywhere in the command line wins over env and stored config
        ctx.meta[f"ocore.{param.name}"] = value


def global_options(function: F) -> F:
    """`--url`, `--token`, `--org` and `--json`, accepted by the group and by every command."""
    shared: dict[str, Any] = {"expose_value": False, "callback": _remember}
    options = [
        click.option(
            "--url", metavar="URL", help=f"API base URL [env OCORE_URL; default {config.DEFAULT_URL}]", **shared
        ),
        click.option("--token", metavar="JWT", help="Bearer token [env OCORE_TOKEN]", **shared),
        click.option("--org", metavar="ORG_ID", help="Organization id [env OCORE_ORG]", **shared),
        click.option("--json", is_flag=True, help="Print the server's JSON instead of a table.", **shared),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def api() -> Client:
    """A client built from the flags, the environment and the stored config, in that order."""
    meta = click.get_current_context().meta
    settings = config.resolve({name: meta.get(f"ocore.{name}") for name in ("url", "token", "org")})
    return Client(settings.url, settings.token, settings.org)


def json_mode() -> bool:
    return bool(click.get_current_context().meta.get("ocore.json"))


def show(data: Any, human: Callable[[Any], None]) -> None:
    """The server's JSON with --json, else the human rendering."""
    if json_mode():
        echo_json(data)
    else:
        human(data)


def paged(path: str, key: str, follow: bool, **params: Any) -> dict[str, Any]:
    """One page, or with `follow` every page merged into the last page's envelope."""
    pages = list(api().pages(path, follow=follow, **params))
    merged = {**pages[-1], key: [item for page in pages for item in page[key]]}
    if merged.get("nextCursor") and not json_mode():
        total = f" of {merged['total']}" if "total" in merged else ""
        click.echo(f"(showing the first {len(merged[key])}{total} {key}; pass --all for every page)", err=True)
    return merged


LIMIT = click.option("--limit", type=click.IntRange(1, 200), help="Page size (server default 50).")
ALL = click.option("--all", "follow", is_flag=True, help="Follow nextCursor through every page.")


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 ok, 1 other failure, 2 usage, 3 authentication, 4 permission, 5 not found, "
    "6 conflict or gone.",
)
@global_options
def main() -> None:
    """Team management for oCore: members, invitations, invite links, roles, bulk jobs, audit log."""


@main.command()
@click.option("--token", prompt=True, hide_input=True, help="Bearer token (JWT) to store.")
@click.option("--url", help="API base URL to store.")
@click.option("--org", help="Default organization id to store.")
@click.pass_context
def login(ctx: click.Context, token: str, url: str | None, org: str | None) -> None:
    """Store a token (and optionally URL and organization) in the user's config, mode 0600."""
    url, org = url or ctx.meta.get("ocore.url"), org or ctx.meta.get("ocore.org")
    path = config.store({"token": token, "url": url, "org": org})
    click.echo(f"Saved the token{' and URL' if url else ''}{' and organization' if org else ''} to {path}.")


@main.command()
@global_options
def me() -> None:
    """Who you are in the active organization, and what you may do."""
    show(api().get("/api/me"), output.me)


# -- organizations --------------------------------------------------------------------------------------------------
@main.group()
def org() -> None:
    """Organizations you belong to."""


@org.command("list")
@global_options
def org_list() -> None:
    """Your organizations and your role in each."""
    data = api().request("GET", "/api/organizations", scoped=False)
    show(data, output.lister("organizations", output.ORGANIZATIONS))


@org.command("create")
@click.argument("name")
@global_options
def org_create(name: str) -> None:
    """Create an organization; you become its Owner."""
    data = api().request("POST", "/api/organizations", body={"name": name}, scoped=False)
    show(data, output.organization_created)


# -- members --------------------------------------------------------------------------------------------------------
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


def finish_watch(client: Client, job: dict[str, Any]) -> None:
    """Watch a job to its end, print it, and exit 1 unless every item succeeded."""
    try:
        job = watch_job(lambda: client.get(f"/api/jobs/{job['id']}"), job)
    except KeyboardInterrupt:
        raise WatchInterruptedError(
            f"stopped watching; job {job['id']} goes on (ocore job show {job['id']} --watch)"
        ) from None
    show(job, output.job)
    if job["status"] != "succeeded":
        raise click.exceptions.Exit(1)


# -- jobs -----------------------------------------------------------------------------------------------------------
@main.group()
def job() -> None:
    """Bulk-operation jobs."""


@job.command("show")
@click.argument("job_id", type=click.UUID)
@click.option("--watch", is_flag=True, help="Draw a progress bar until the job ends; exit 1 unless it succeeded.")
@global_options
def job_show(job_id: UUID, watch: bool) -> None:
    """A job's progress, counts and failed items."""
    client = api()
    data = client.get(f"/api/jobs/{job_id}")
    if watch:
        finish_watch(client, data)
    else:
        show(data, output.job)


@job.command("list")
@LIMIT
@global_options
def job_list(limit: int | None) -> None:
    """The organization's jobs, newest first."""
    show(api().get("/api/jobs", limit=limit), output.lister("jobs", output.JOBS))


@job.command("cancel")
@click.argument("job_id", type=click.UUID)
@global_options
def job_cancel(job_id: UUID) -> None:
    """Stop a running job after its current batch."""
    show(api().request("POST", f"/api/jobs/{job_id}/cancel"), output.job)


# -- invitations and invite links -----------------------------------------------------------------------------------
@main.group()
def invitation() -> None:
    """E-mail invitations."""


@invitation.command("list")
@click.option("--status", type=click.Choice(["pending", "accepted", "expired", "cancelled", "all"]),
              help="Which invitations (server default: pending).")  # fmt: skip
@LIMIT
@ALL
@global_options
def invitation_list(status: str | None, limit: int | None, follow: bool) -> None:
    """Invitations, newest first."""
    data = paged("/api/invitations", "invitations", follow, status=status, limit=limit)
    show(data, output.lister("invitations", output.INVITATIONS))


@invitation.command("cancel")
@click.argument("invitation_id", type=click.UUID)
@global_options
def invitation_cancel(invitation_id: UUID) -> None:
    """Cancel a pending invitation."""
    show(api().request("DELETE", f"/api/invitations/{invitation_id}"), output.message)


@invitation.command("resend")
@click.argument("invitation_id", type=click.UUID)
@click.option("--expires-in-days", type=int, help="A new validity (default: keep the previous one).")
@global_options
def invitation_resend(invitation_id: UUID, expires_in_days: int | None) -> None:
    """Send the invitation again with a new link; the old link stops working."""
    body = {} if expires_in_days is None else {"expiresInDays": expires_in_days}
    data = api().request("POST", f"/api/invitations/{invitation_id}/resend", body=body)
    show(data, output.resent)


@invitation.command("accept")
@click.argument("secret", metavar="TOKEN")
@global_options
def invitation_accept(secret: str) -> None:
    """Join with an invitation TOKEN (or the whole accept link from the e-mail)."""
    if "token=" in secret:
        secret = parse_qs(urlsplit(secret).query).get("token", [secret])[0]
    show(api().request("POST", "/api/auth/accept-invite", body={"token": secret}, scoped=False), output.joined)


@main.group("invite-link")
def invite_link() -> None:
    """Shareable invite links."""


@invite_link.command("create")
@click.option("--role", required=True, help="Role id or name granted to whoever joins.")
@click.option("--max-uses", type=int, help="How many people may join (0 = unlimited; server default 0).")
@click.option("--expires-in-days", type=int, help="Days until the link expires (server default 7).")
@global_options
def invite_link_create(role: str, max_uses: int | None, expires_in_days: int | None) -> None:
    """Create an invite link."""
    client = api()
    body = {"roleId": client.resolve_role(role), "maxUses": max_uses, "expiresInDays": expires_in_days}
    data = client.request("POST", "/api/invite-links", body={k: v for k, v in body.items() if v is not None})
    show(data, output.link_created)


@invite_link.command("list")
@global_options
def invite_link_list() -> None:
    """Invite links with their codes and use counts."""
    show(api().get("/api/invite-links"), output.lister("inviteLinks", output.INVITE_LINKS))


@invite_link.command("delete")
@click.argument("link_id", type=click.UUID)
@global_options
def invite_link_delete(link_id: UUID) -> None:
    """Delete an invite link; it stops working at once."""
    show(api().request("DELETE", f"/api/invite-links/{link_id}"), output.message)


@invite_link.command("accept")
@click.argument("code")
@global_options
def invite_link_accept(code: str) -> None:
    """Join with an invite link's CODE (or its whole URL)."""
    code = code.rstrip("/").rsplit("/join/", 1)[-1]
    show(api().request("POST", "/api/auth/accept-invite-link", body={"code": code}, scoped=False), output.joined)


# -- roles, permissions, audit --------------------------------------------------------------------------------------
@main.group()
def role() -> None:
    """Roles: the system ones and your custom roles."""


@role.command("list")
@global_options
def role_list() -> None:
    """Roles with their member counts."""
    show(api().get("/api/roles"), output.lister("roles", output.ROLES))


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
