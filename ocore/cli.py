"""`ocore`: manage an organization's members, invitations, roles and bulk jobs from the shell.

Every command takes `--url`, `--token`, `--org` and `--json`, before or after
the command name. Exit codes: 0 ok, 1 other failure, 2 usage, 3 authentication,
4 permission, 5 not found, 6 conflict or gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ocore import config, output
from ocore.client import MAX_PAGE, Client
from ocore.output import echo_json

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


def paged(path: str, key: str, follow: bool, scoped: bool = True, **params: Any) -> dict[str, Any]:
    """One page, or with `follow` every page merged into the last page's envelope."""
    pages = list(api().pages(path, follow=follow, scoped=scoped, **params))
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
    data = paged("/api/organizations", "organizations", True, scoped=False, limit=MAX_PAGE)
    show(data, output.lister("organizations", output.ORGANIZATIONS))


@org.command("create")
@click.argument("name")
@global_options
def org_create(name: str) -> None:
    """Create an organization; you become its Owner."""
    data = api().request("POST", "/api/organizations", body={"name": name}, scoped=False)
    show(data, output.organization_created)


# -- members --------------------------------------------------------------------------------------------------------


# The command groups live in their own modules and register themselves on `main`.
from ocore import invitations_commands, jobs_commands, members_commands, roles_commands  # noqa: E402, F401
