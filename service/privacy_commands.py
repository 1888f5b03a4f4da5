"""Operators' commands for personal data: `membership privacy erase|erasures|rotate-key`."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import asdict

import click

from membership.exceptions import MembershipError
from service.console import services
from service.privacy import finish_erasures, seal_stored_events


@click.group()
def privacy() -> None:
    """Erase a person (GDPR Art. 17), list erasures, rotate the master key of personal data."""


@privacy.command("erase")
@click.option("--email", "email_address", help="The person's e-mail address.")
@click.option("--user-id", help="The person's user id: every address they used is erased.")
@click.option("--operator", default=getpass.getuser, show_default="your user name", help="Who erases (recorded).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--finish", is_flag=True, help="Only finish erasures a failure stopped after their key was deleted.")
def privacy_erase(email_address: str | None, user_id: str | None, operator: str, yes: bool, finish: bool) -> None:
    """Erase a person: their key is deleted, so their address and name read as "erased member 7f3a…" in every
    event; they leave every organization; snapshots, mail rows, stored responses and outbox files naming them
    are purged and every read model is rebuilt. It cannot be undone. An Owner must transfer ownership first."""
    if finish:
        with services() as built:
            click.echo(json.dumps({"finished": finish_erasures(built)}, indent=2))
        return
    if (email_address is None) == (user_id is None) or user_id == "":
        raise click.UsageError("give exactly one of --email and --user-id")
    if not yes:
        click.confirm(f"Erase {email_address or 'user ' + str(user_id)} for good?", abort=True)
    with services() as built:
        try:
            done = built.erase_person(operator, email_address=email_address, user_id=user_id)
        except MembershipError as error:
            click.echo(f"membership: nothing was erased: {error.message}", err=True)
            sys.exit(1)
    click.echo(json.dumps(asdict(done), indent=2))


@privacy.command("erasures")
def privacy_erasures() -> None:
    """Every erasure: pseudonym, when, by whom, in how many organizations (no personal data)."""
    with services() as built:
        assert built.organizations.personal_keys is not None
        click.echo(json.dumps(built.organizations.personal_keys.erasures(), indent=2))


@privacy.command("rotate-key")
def privacy_rotate_key() -> None:
    """Re-wrap every person's key with MEMBERSHIP_DATA_KEY (the previous master key given in
    MEMBERSHIP_DATA_KEYS_RETIRED, or derived from MEMBERSHIP_SECRET_KEY if none was set before)."""
    with services() as built:
        assert built.organizations.personal_keys is not None
        count = built.organizations.personal_keys.rotate()
    click.echo(f"re-wrapped {count} keys with the current master key")


@privacy.command("seal-events")
def privacy_seal_events() -> None:
    """One-off, after upgrading a store written before personal data was sealed: rewrite those events with
    their addresses and names sealed per person (each checked to read back the same), delete the snapshots
    and compact the files. Safe to run while serving and to run again; until it has run, an erasure cannot
    reach the data of older events."""
    with services() as built:
        report = seal_stored_events(built)
    click.echo(json.dumps(asdict(report), indent=2))
    if report.changed_meanwhile:
        click.echo("membership: some events changed while they were sealed: run it again", err=True)
        sys.exit(1)
