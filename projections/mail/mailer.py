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
is final. One slow or failing delivery never holds up the others.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from membership import Organization, Organizations
from membership.tokens import INVITATION
from projections.background import BackgroundLoop
from projections.mail import outbox
from projections.mail.compose import Invitation, compose, message_id
from projections.mail.transport import PermanentError, TransientError, Transport
from projections.sql import ReadDatabase

log = logging.getLogger(__name__)
TOPICS = [get_topic(Organization.MemberInvited), get_topic(Organization.InvitationResent)]


class Mailer(BackgroundLoop):
    name = "mailer"

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

    # -- the three steps ---------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Ingest new events, deliver what is due, record outcomes; returns how much work was done."""
        return self.ingest() + self.deliver() + self.record()

    def ingest(self) -> int:
        with self.db.transaction() as cursor:
            start = outbox.lock_position(self.db, cursor)
            notifications = self.organizations.recorder.select_notifications(start=start + 1, limit=500, topics=TOPICS)
            if not notifications:
                return 0
            rows = [self._delivery_row(self.organizations.mapper.to_domain_event(n)) for n in notifications]
            outbox.enqueue(self.db, cursor, rows, notifications[-1].id, self.now())
        return len(rows)

    def deliver(self) -> int:
        due = outbox.claim_due(self.db, self.now(), self.lease, self.batch_size)
        for delivery in due:
            self._deliver(delivery)
        return len(due)

    def record(self) -> int:
        """Turn outcomes into events (retried here if the store was briefly unavailable)."""
        done = outbox.unrecorded(self.db)
        for delivery, status in done:
            self.organizations.record_invitation_email(
                UUID(delivery.organization_id),
                UUID(delivery.invitation_id),
                delivery.token_nonce,
                delivery.delivery_id,
                failure=(delivery.last_error or "refused") if status == outbox.FAILED else "",
            )
            outbox.mark_recorded(self.db, delivery.delivery_id)
        return len(done)

    def now(self) -> datetime:
        return self.organizations.clock()

    # -- one delivery ------------------------------------------------------------------------------------------
    def _delivery_row(self, event: Any) -> tuple[str, str, str, str, str, str]:
        msg_id = message_id(event.invitation_id, event.token_nonce, self.sender)
        recipient = getattr(event, "email", "")
        return (
            msg_id,
            str(event.originator_id),
            str(event.invitation_id),
            event.token_nonce,
            recipient,
            event.actor_email,
        )

    def _deliver(self, delivery: outbox.Delivery) -> None:
        invitation = self._current(delivery)
        if invitation is None:
            outbox.finish(self.db, delivery, outbox.SKIPPED, self.now())
            return
        message = compose(invitation, self.sender, delivery.delivery_id, self.now())
        try:
            self.transport.send(message)
        except PermanentError as error:
            log.warning("mailer: %s refused for good: %s", delivery.delivery_id, error)
            outbox.finish(self.db, delivery, outbox.FAILED, self.now(), str(error)[:1000])
        except TransientError as error:
            delay = min(self.retry_base_s * 2 ** max(delivery.attempts - 1, 0), self.retry_max_s)
            log.info("mailer: %s not sent (%s); retry in %.1f s", delivery.delivery_id, error, delay)
            outbox.retry_later(self.db, delivery, self.now() + timedelta(seconds=delay), str(error))
        else:
            outbox.finish(self.db, delivery, outbox.SENT, self.now())

    def _current(self, delivery: outbox.Delivery) -> Invitation | None:
        """What to send, from the current state; None when this token needs no e-mail any more."""
        organization_id, invitation_id = UUID(delivery.organization_id), UUID(delivery.invitation_id)
        with self.organizations.reading(organization_id) as org:
            stored = org.invitations.get(str(invitation_id))
            now = self.now()
            if stored is None or stored["token_nonce"] != delivery.token_nonce:
                return None  # replaced by a resend, whose own delivery carries the new token
            if org.invitation_status(stored, now) != "pending":
                return None  # accepted, cancelled or expired: nothing more to send
            inviter = org.member_for_user(stored["invited_by"])
            inviter_label = (
                (inviter["name"] or inviter["email"]) if inviter else (delivery.inviter_email or "An administrator")
            )
            role = org.roles[stored["role_id"]]["name"]
            name, expires_at = org.name, stored["expires_at"]
        token = self.organizations.signer.derive(INVITATION, organization_id, invitation_id, delivery.token_nonce)
        return Invitation(
            organization=name,
            inviter=inviter_label,
            role=role,
            recipient=stored["email"],
            expires_at=expires_at,
            accept_url=f"{self.public_url}/invite/accept?token={token}",
        )
