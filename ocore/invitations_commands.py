"""`ocore invitation ...` and `ocore invite-link ...`."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import click

from ocore import output
from ocore.cli import ALL, LIMIT, api, global_options, main, paged, show
from ocore.client import MAX_PAGE


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
    data = paged("/api/invite-links", "inviteLinks", True, limit=MAX_PAGE)
    show(data, output.lister("inviteLinks", output.INVITE_LINKS))


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
