"""The invitation e-mail: plain text and HTML, naming who invites whom to what, until when."""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from uuid import UUID


@dataclass(frozen=True)
class Invitation:
    organization: str
    inviter: str
    role: str
    recipient: str
    expires_at: datetime
    accept_url: str


def message_id(invitation_id: UUID | str, token_nonce: str, sender: str) -> str:
    """Stable for one token (a re-send after a crash is the same message), new for each resend."""
    domain = parseaddr(sender)[1].partition("@")[2] or "ocore.localhost"
    digest = hashlib.sha256(token_nonce.encode()).hexdigest()[:16]
    return f"<invitation.{invitation_id}.{digest}@{domain}>"


def compose(invitation: Invitation, sender: str, msg_id: str, now: datetime) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"{invitation.inviter} invited you to join {invitation.organization} on oCore"
    message["From"] = sender
    message["To"] = formataddr(("", invitation.recipient))
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
    return message
