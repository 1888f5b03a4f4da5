"""Handing messages over: to an SMTP server, or (with no SMTP configured) to files in var/outbox."""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from uuid import uuid4

from workers.mail.compose import Outgoing

if TYPE_CHECKING:  # settings are handed in by the service package (service.bootstrap)
    from service.settings import Smtp

log = logging.getLogger(__name__)


class TransientError(Exception):
    """Try again later: the server is unreachable, busy or answered 4xx."""


class PermanentError(Exception):
    """The server refused the message for good (5xx), or cannot take it at all."""


NO_SMTPUTF8 = "the mail server does not support internationalized addresses (SMTPUTF8)"


class Transport(Protocol):
    def send(self, outgoing: Outgoing) -> None: ...


class SmtpTransport:
    def __init__(self, smtp: Smtp) -> None:
        self.smtp = smtp

    def send(self, outgoing: Outgoing) -> None:
        try:
            with self._connect() as client:
                if self.smtp.starttls and not self.smtp.implicit_tls:
                    client.starttls(context=ssl.create_default_context())
                if self.smtp.username:
                    client.login(self.smtp.username, self.smtp.password)
                client.ehlo_or_helo_if_needed()
                if outgoing.smtputf8 and not client.has_extn("smtputf8"):
                    raise PermanentError(NO_SMTPUTF8)
                # The bytes compose wrote (send_message would write the message again); the options are
                # send_message's for a message that needs SMTPUTF8.
                options = ("SMTPUTF8", "BODY=8BITMIME") if outgoing.smtputf8 else ()
                client.sendmail(outgoing.sender, [outgoing.recipient], outgoing.data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise (PermanentError if all(code >= 500 for code in codes) else TransientError)(str(error)) from None
        except smtplib.SMTPAuthenticationError as error:
            log.error("SMTP login refused; check MEMBERSHIP_SMTP_USERNAME and _PASSWORD: %s", error)
            raise TransientError(f"login refused: {error}") from None
        except smtplib.SMTPResponseException as error:
            raise (PermanentError if error.smtp_code >= 500 else TransientError)(
                f"{error.smtp_code} {error.smtp_error!r}"
            ) from None
        except (smtplib.SMTPException, OSError) as error:  # refused, reset, timed out, TLS failures
            raise TransientError(f"{type(error).__name__}: {error}") from None

    def _connect(self) -> smtplib.SMTP:
        if self.smtp.implicit_tls:
            return smtplib.SMTP_SSL(
                self.smtp.host, self.smtp.port, timeout=self.smtp.timeout_s, context=ssl.create_default_context()
            )
        return smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.smtp.timeout_s)


class OutboxTransport:
    """For local use without SMTP: each message becomes an .eml file, and its link is logged."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, outgoing: Outgoing) -> None:
        message = outgoing.message
        self.directory.mkdir(parents=True, exist_ok=True)
        name = str(message["Message-ID"]).strip("<>").replace("/", "_") + ".eml"
        path = self.directory / name
        self._write_atomically(path, outgoing.data)
        # Neither the address nor the link (its token admits whoever reads the log): the file holds both.
        log.info("invitation e-mail written to %s", path)

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        """Readers of the outbox see a whole .eml file or none: write a hidden temporary file (its name
        does not end in .eml) in the same directory, then rename it into place."""
        temporary = path.with_name(f".{path.name}.{uuid4().hex}.tmp")  # unique per writer; umask permissions
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


def transport_for(smtp: Smtp, var_dir: Path) -> Transport:
    return SmtpTransport(smtp) if smtp.host else OutboxTransport(var_dir / "outbox")
