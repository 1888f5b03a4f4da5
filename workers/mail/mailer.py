"""Sends one e-mail per invitation token, driven by the event log, never by the HTTP request.

1. Ingest: MemberInvited and InvitationResent events become `queued` deliveries,
   written in one transaction with the mailer's position (none lost, none twice).
2. Deliver: due deliveries are claimed under a lease, checked against the
   current state (a cancelled, accepted or re-sent invitation sends nothing
   more), sent, and marked. A crash between sending and marking re-sends that
   one message once the lease expires, with the same Message-ID.
3. Record: each outcome becomes an event (InvitationEmailSent or
   InvitationEmailFailed), so the invitation and the audit log show it.

A server that is down or answers 4xx is retried with exponential backoff; 5xx
is final, and so is a message that cannot be composed (an address or header
it cannot carry) or an internationalized address the server cannot take
(no SMTPUTF8). Each delivery fails alone: an unexpected error while handling
one is retried later for that one, with backoff, and never ends the round.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from membership import Organization, Organizations
from membership.application import EmailOutcome
from membership.exceptions import MembershipError
from membership.personal_data import decoded
from membership.tokens import INVITATION
from projections import outbox
from projections.engine.background import BackgroundLoop
from projections.engine.sql import ReadDatabase
from workers import cursors
from workers.mail.compose import CompositionError, Invitation, compose, message_id
from workers.mail.transport import PermanentError, TransientError, Transport

log = logging.getLogger(__name__)
CURSOR = "mailer"  # its event cursor (workers.cursors)
TOPICS = [get_topic(Organization.MemberInvited), get_topic(Organization.InvitationResent)]


class Mailer(BackgroundLoop):
    name = "mailer"
    # Under load, one round per 50 ms takes every invitation saved meanwhile: a round costs ~8 statements
    # whatever it carries, and an e-mail 50 ms later is no later for its reader.
    pause_after_work_s = 0.05

    def __init__(
        self,
        organizations: Organizations,
        db: ReadDatabase,
        transport: Transport,
        sender: str,
        public_url: str,
        retry_base_s: float = 5.0,
        retry_max_s: float = 600.0,
        lease_s: float = 120.0,
        batch_size: int = 50,
        poll_interval_s: float = 0.25,
    ) -> None:
        super().__init__(organizations)
        self.poll_interval_s = poll_interval_s
        self.organizations, self.db, self.transport = organizations, db, transport
        self.sender, self.public_url = sender, public_url
        self.retry_base_s, self.retry_max_s = retry_base_s, retry_max_s
        self.lease = timedelta(seconds=lease_s)
        self.batch_size = batch_size
        with db.transaction() as cursor:
            outbox.create_tables(db, cursor)
            cursors.create_table(db, cursor)

    # -- the three steps ---------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Ingest new events, deliver what is due, record outcomes; returns how much work was done."""
        return self.ingest() + self.deliver() + self.record()

    def ingest(self) -> int:
        # The event log is read outside the write transaction: on SQLite, a thread holding the
        # database's write lock while it waits for an event-store connection can deadlock with a
        # command holding the event store's writer while it waits for that lock (until a 5 s timeout).
        with self.db.snapshot() as cursor:
            start = cursors.position(self.db, cursor, CURSOR)
        notifications = self.organizations.recorder.select_notifications(start=start + 1, limit=500, topics=TOPICS)
        if not notifications:
            return 0
        rows = [self._delivery_row(event) for event in decoded(self.organizations.mapper, notifications)]
        with self.db.transaction() as cursor:
            if cursors.lock(self.db, cursor, CURSOR) != start:
                return 0  # another worker took these meanwhile; the next round reads on from where it got
            outbox.enqueue(self.db, cursor, rows, self.now())
            cursors.advance(self.db, cursor, CURSOR, notifications[-1].id)
        return len(rows)

    def deliver(self) -> int:
        due = outbox.claim_due(self.db, self.now(), self.lease, self.batch_size)
        for delivery in due:
            self._deliver_alone(delivery)
        return len(due)

    def record(self) -> int:
        """Turn outcomes into events, one save per organization; what cannot be recorded now is tried again
        next round."""
        done = outbox.unrecorded(self.db)
        by_organization: dict[str, list[tuple[outbox.Delivery, str]]] = {}
        for delivery, status in done:
            by_organization.setdefault(delivery.organization_id, []).append((delivery, status))
        for organization_id, deliveries in by_organization.items():
            try:
                refused = self.organizations.record_invitation_emails(
                    UUID(organization_id), [_outcome(delivery, status) for delivery, status in deliveries]
                )
            except (MembershipError, ValueError) as error:  # no such organization: never recordable
                refused = [UUID(delivery.invitation_id) for delivery, _ in deliveries]
                log.warning("mailer: outcomes for organization %s cannot be recorded: %s", organization_id, error)
            except Exception:  # the store, briefly: the next round tries again
                log.warning("mailer: outcomes for organization %s not recorded yet", organization_id, exc_info=True)
                continue
            for invitation_id in refused:
                log.warning("mailer: the outcome for invitation %s cannot be recorded: it is gone", invitation_id)
            outbox.mark_recorded(self.db, [delivery.delivery_id for delivery, _ in deliveries])
        return len(done)

    def now(self) -> datetime:
        return self.organizations.clock()

    # -- one delivery ------------------------------------------------------------------------------------------
    def _delivery_row(self, event: Any) -> tuple[str, str, str, str, str, str, datetime]:
        msg_id = message_id(event.invitation_id, event.token_nonce, self.sender)
        recipient = getattr(event, "email", "")
        return (
            msg_id,
            str(event.originator_id),
            str(event.invitation_id),
            event.token_nonce,
            recipient,
            event.actor_email,
            event.timestamp,
        )

    def _deliver_alone(self, delivery: outbox.Delivery) -> None:
        """Whatever goes wrong with one delivery stays with it: the others of the round go on."""
        try:
            self._deliver(delivery)
        except Exception as error:  # a bug or an outage met by this one message: it alone is retried later
            log.warning("mailer: %s failed unexpectedly", delivery.delivery_id, exc_info=True)
            try:
                self._retry(delivery, f"unexpected error: {type(error).__name__}: {error}")
            except Exception:  # the store itself: the lease brings the delivery back
                log.warning("mailer: %s could not be rescheduled; its lease will expire", delivery.delivery_id)

    def _deliver(self, delivery: outbox.Delivery) -> None:
        try:
            invitation = self._current(delivery)
            if invitation is None:
                outbox.finish(self.db, delivery, outbox.SKIPPED, self.now())
                return
            outgoing = compose(invitation, self.sender, delivery.delivery_id, self.now())
        except (MembershipError, CompositionError) as error:
            self._fail(delivery, f"cannot compose the message: {error}")
            return
        try:
            self.transport.send(outgoing)
        except PermanentError as error:
            self._fail(delivery, without_address(str(error), delivery.recipient))
        except TransientError as error:
            self._retry(delivery, without_address(str(error), delivery.recipient))
        else:
            outbox.finish(self.db, delivery, outbox.SENT, self.now())

    def _fail(self, delivery: outbox.Delivery, reason: str) -> None:
        log.warning("mailer: %s failed for good: %s", delivery.delivery_id, reason)
        outbox.finish(self.db, delivery, outbox.FAILED, self.now(), reason)

    def _retry(self, delivery: outbox.Delivery, error: str) -> None:
        delay = min(self.retry_base_s * 2 ** max(delivery.attempts - 1, 0), self.retry_max_s)
        log.warning("mailer: %s not sent (%s); retry in %.1f s", delivery.delivery_id, error, delay)
        now = self.now()
        outbox.retry_later(self.db, delivery, now, now + timedelta(seconds=delay), error)

    def _current(self, delivery: outbox.Delivery) -> Invitation | None:
        """What to send, from the current state; None when this token needs no e-mail any more."""
        organization_id, invitation_id = UUID(delivery.organization_id), UUID(delivery.invitation_id)
        with self.organizations.reading(organization_id) as org:
            stored = org.invitations.get(str(invitation_id))
            now = self.now()
            if stored is None or stored.token_nonce != delivery.token_nonce:
                return None  # replaced by a resend, whose own delivery carries the new token
            if org.invitation_status(stored, now) != "pending":
                return None  # accepted, cancelled or expired: nothing more to send
            inviter = org.member_for_user(stored.invited_by)
            inviter_label = (
                (inviter.name or inviter.email) if inviter else (delivery.inviter_email or "An administrator")
            )
            role = org.get_role(stored.role_id).name
            name, expires_at = org.name, stored.expires_at
        token = self.organizations.signer.derive(INVITATION, organization_id, invitation_id, delivery.token_nonce)
        return Invitation(
            organization=name,
            inviter=inviter_label,
            role=role,
            recipient=stored.email,
            expires_at=expires_at,
            accept_url=f"{self.public_url}/invite/accept?token={token}",
        )


def without_address(text: str, address: str) -> str:
    """A mail server's reply names the recipient: kept in the delivery row, the log and the audit trail
    (InvitationEmailFailed), it would hold the address where erasing the person cannot reach it."""
    return re.sub(re.escape(address), "<recipient>", text, flags=re.IGNORECASE) if address else text


def _outcome(delivery: outbox.Delivery, status: str) -> EmailOutcome:
    failure = (delivery.last_error or "refused") if status == outbox.FAILED else ""
    return EmailOutcome(UUID(delivery.invitation_id), delivery.token_nonce, delivery.delivery_id, failure)
