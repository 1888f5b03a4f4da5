"""Read model: every invitation with its status, and every invite link.

`expired` is not stored for a pending invitation: queries compare `expires_at`
with the current time, so expiry needs no event. Codes and tokens are never
stored; the API derives them from the write side when it must show one.
"""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from membership.domain import Organization
from projections.base import Projection, Writer


class InvitationsProjection(Projection):
    name = "invitations"
    tables = {
        "invitations": (
            "invitation_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, email TEXT NOT NULL, "
            "role_id TEXT NOT NULL, status TEXT NOT NULL, invited_by_id TEXT NOT NULL, invited_by_email TEXT NOT NULL, "
            "created_at {ts} NOT NULL, expires_at {ts} NOT NULL, resent_at {ts}, resend_count INTEGER NOT NULL, "
            "closed_at {ts}, closed_by TEXT, member_id TEXT, email_status TEXT NOT NULL, last_sent_at {ts}"
        ),
        "invite_links": (
            "link_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, role_id TEXT NOT NULL, "
            "max_uses INTEGER NOT NULL, use_count INTEGER NOT NULL, expires_at {ts} NOT NULL, "
            "created_by_id TEXT NOT NULL, created_by_email TEXT NOT NULL, created_at {ts} NOT NULL, deleted_at {ts}"
        ),
    }
    indexes = [
        ("by_org_created", "invitations", "organization_id, created_at, invitation_id"),
        ("by_org_status", "invitations", "organization_id, status, expires_at"),
        ("by_org_created", "invite_links", "organization_id, created_at, link_id"),
    ]
    batched = {"invitations": "invitation_id", "invite_links": "link_id"}

    def _close(self, w: Writer, invitation_id: Any, status: str, e: Any) -> None:
        self.changes["invitations"].update(
            str(invitation_id), status=status, closed_at=w.time(e.timestamp), closed_by=e.actor_id
        )

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        pass

    @apply.register(Organization.MemberInvited)
    def _invited(self, e: Organization.MemberInvited, w: Writer) -> None:
        if e.replaces_invitation_id is not None:
            self._close(w, e.replaces_invitation_id, "expired", e)
        self.changes["invitations"].insert(
            str(e.invitation_id), organization_id=str(e.originator_id), email=e.email, role_id=str(e.role_id),
            status="pending", invited_by_id=e.actor_id, invited_by_email=e.actor_email,
            created_at=w.time(e.timestamp), expires_at=w.time(e.expires_at), resend_count=0, email_status="queued",
        )  # fmt: skip

    @apply.register(Organization.InvitationResent)
    def _resent(self, e: Organization.InvitationResent, w: Writer) -> None:
        invitations = self.changes["invitations"]
        invitation_id = str(e.invitation_id)
        invitations.update(
            invitation_id, expires_at=w.time(e.expires_at), resent_at=w.time(e.timestamp), email_status="queued"
        )
        invitations.increment(invitation_id, "resend_count")

    @apply.register(Organization.InvitationCancelled)
    def _cancelled(self, e: Organization.InvitationCancelled, w: Writer) -> None:
        self._close(w, e.invitation_id, "cancelled", e)

    @apply.register(Organization.InviteAccepted)
    def _accepted(self, e: Organization.InviteAccepted, w: Writer) -> None:
        self.changes["invitations"].update(
            str(e.invitation_id), status="accepted", closed_at=w.time(e.timestamp), closed_by=e.actor_id,
            member_id=str(e.member_id),
        )  # fmt: skip

    @apply.register(Organization.InvitationEmailSent)
    def _email_sent(self, e: Organization.InvitationEmailSent, w: Writer) -> None:
        self.changes["invitations"].update(str(e.invitation_id), email_status="sent", last_sent_at=w.time(e.timestamp))

    @apply.register(Organization.InvitationEmailFailed)
    def _email_failed(self, e: Organization.InvitationEmailFailed, w: Writer) -> None:
        self.changes["invitations"].update(str(e.invitation_id), email_status="failed")

    @apply.register(Organization.InviteLinkCreated)
    def _link_created(self, e: Organization.InviteLinkCreated, w: Writer) -> None:
        self.changes["invite_links"].insert(
            str(e.link_id), organization_id=str(e.originator_id), role_id=str(e.role_id), max_uses=e.max_uses,
            use_count=0, expires_at=w.time(e.expires_at), created_by_id=e.actor_id, created_by_email=e.actor_email,
            created_at=w.time(e.timestamp),
        )  # fmt: skip

    @apply.register(Organization.InviteLinkDeleted)
    def _link_deleted(self, e: Organization.InviteLinkDeleted, w: Writer) -> None:
        self.changes["invite_links"].update(str(e.link_id), deleted_at=w.time(e.timestamp))

    @apply.register(Organization.MemberJoinedByLink)
    def _joined_by_link(self, e: Organization.MemberJoinedByLink, w: Writer) -> None:
        self.changes["invite_links"].increment(str(e.link_id), "use_count")
        if e.cancelled_invitation_id is not None:
            self._close(w, e.cancelled_invitation_id, "cancelled", e)
