"""The invitation e-mail: plain text and HTML, naming who invites whom to what, until when."""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from uuid import UUID

from membership import addresses


@dataclass(frozen=True)
class Invitation:
    organization: str
    inviter: str
    role: str
    recipient: str
    expires_at: datetime
    accept_url: str


class CompositionError(Exception):
    """The message cannot be written (an address or a header it cannot carry): trying again will not help."""


@dataclass(frozen=True)
class Outgoing:
    """A composed message and its envelope; `smtputf8` when the envelope needs the server's SMTPUTF8 extension."""

    message: EmailMessage
    data: bytes  # the message as handed to the server (SMTPUTF8 servers take UTF-8 headers), written once
    sender: str
    recipient: str
    smtputf8: bool


def message_id(invitation_id: UUID | str, token_nonce: str, sender: str) -> str:
    """Stable for one token (a re-send after a crash is the same message), new for each resend."""
    domain = parseaddr(sender)[1].partition("@")[2] or "ocore.localhost"
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    digest = hashlib.sha256(token_nonce.encode()).hexdigest()[:16]
    return f"<invitation.{invitation_id}.{digest}@{domain}>"


def compose(invitation: Invitation, sender: str, msg_id: str, now: datetime) -> Outgoing:
    """The message and its envelope; CompositionError when it cannot be written."""
    try:
        recipient = addresses.parse(addresses.normalize(invitation.recipient))
    except addresses.AddressError as error:
        raise CompositionError(
            f"the recipient {invitation.recipient!r} is not a deliverable address: {error}"
        ) from None
    # An ASCII local part goes out all-ASCII (the domain in A-labels), so any server takes it.
    to = f"{recipient.local}@{recipient.domain}" if recipient.needs_smtputf8 else recipient.envelope
    try:
        envelope_sender = _envelope(parseaddr(sender)[1])
        smtputf8 = recipient.needs_smtputf8 or not envelope_sender.isascii()
        message = EmailMessage()
        _write(message, invitation, sender, to, msg_id, now)
        # What would fail at the server's door fails here, once and for good.
        data = message.as_bytes(policy=policy.SMTPUTF8 if smtputf8 else policy.SMTP)
    except (ValueError, MessageError) as error:  # UnicodeError is a ValueError
        raise CompositionError(f"the message cannot be written: {error}") from None
    return Outgoing(message, data, envelope_sender, recipient.envelope, smtputf8)


def _envelope(address: str) -> str:
    """The sender's address with its domain in A-labels."""
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{domain.encode('idna').decode('ascii')}" if at and not domain.isascii() else address


def _write(message: EmailMessage, invitation: Invitation, sender: str, to: str, msg_id: str, now: datetime) -> None:
    message["Subject"] = f"{invitation.inviter} invited you to join {invitation.organization} on oCore"
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = msg_id
    expires = invitation.expires_at.strftime("%d %B %Y at %H:%M UTC")
    message.set_content(
        f"Hello,\n\n{invitation.inviter} invited you to join {invitation.organization} on oCore "
        f"as {invitation.role}.\n\nAccept the invitation:\n{invitation.accept_url}\n\n"
        f"The invitation expires on {expires}. Sign in (or sign up) with {invitation.recipient} to accept it.\n\n"
        "If you did not expect this invitation, you can ignore this e-mail.\n"
    )
    e = html.escape
    message.add_alternative(
        f"<p>Hello,</p><p><strong>{e(invitation.inviter)}</strong> invited you to join "
        f"<strong>{e(invitation.organization)}</strong> on oCore as <strong>{e(invitation.role)}</strong>.</p>"
        f'<p><a href="{e(invitation.accept_url)}">Accept the invitation</a></p>'
        f"<p>The invitation expires on {e(expires)}. Sign in (or sign up) with {e(invitation.recipient)} to accept it.</p>"
        "<p>If you did not expect this invitation, you can ignore this e-mail.</p>",
        subtype="html",
    )
