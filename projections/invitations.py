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

_CLOSE = "UPDATE {invitations} SET status = %s, closed_at = %s, closed_by = %s WHERE invitation_id = %s"


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

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        pass

    @apply.register(Organization.MemberInvited)
    def _invited(self, e: Organization.MemberInvited, w: Writer) -> None:
        at = w.time(e.timestamp)
        if e.replaces_invitation_id is not None:
            w.run(_CLOSE, "expired", at, e.actor_id, str(e.replaces_invitation_id))
        w.run(
            "INSERT INTO {invitations} (invitation_id, organization_id, email, role_id, status, invited_by_id,"
            " invited_by_email, created_at, expires_at, resend_count, email_status)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 'queued')",
            str(e.invitation_id),
            str(e.originator_id),
            e.email,
            str(e.role_id),
            "pending",
            e.actor_id,
            e.actor_email,
            at,
            w.time(e.expires_at),
        )

    @apply.register(Organization.InvitationResent)
    def _resent(self, e: Organization.InvitationResent, w: Writer) -> None:
        w.run(
            "UPDATE {invitations} SET expires_at = %s, resent_at = %s, resend_count = resend_count + 1,"
            " email_status = 'queued' WHERE invitation_id = %s",
            w.time(e.expires_at),
            w.time(e.timestamp),
            str(e.invitation_id),
        )

    @apply.register(Organization.InvitationCancelled)
    def _cancelled(self, e: Organization.InvitationCancelled, w: Writer) -> None:
        w.run(_CLOSE, "cancelled", w.time(e.timestamp), e.actor_id, str(e.invitation_id))

    @apply.register(Organization.InviteAccepted)
    def _accepted(self, e: Organization.InviteAccepted, w: Writer) -> None:
        w.run(
            "UPDATE {invitations} SET status = 'accepted', closed_at = %s, closed_by = %s, member_id = %s"
            " WHERE invitation_id = %s",
            w.time(e.timestamp),
            e.actor_id,
            str(e.member_id),
            str(e.invitation_id),
        )

    @apply.register(Organization.InvitationEmailSent)
    def _email_sent(self, e: Organization.InvitationEmailSent, w: Writer) -> None:
        w.run(
            "UPDATE {invitations} SET email_status = 'sent', last_sent_at = %s WHERE invitation_id = %s",
            w.time(e.timestamp),
            str(e.invitation_id),
        )

    @apply.register(Organization.InvitationEmailFailed)
    def _email_failed(self, e: Organization.InvitationEmailFailed, w: Writer) -> None:
        w.run("UPDATE {invitations} SET email_status = 'failed' WHERE invitation_id = %s", str(e.invitation_id))

    @apply.register(Organization.InviteLinkCreated)
    def _link_created(self, e: Organization.InviteLinkCreated, w: Writer) -> None:
        w.run(
            "INSERT INTO {invite_links} (link_id, organization_id, role_id, max_uses, use_count, expires_at,"
            " created_by_id, created_by_email, created_at) VALUES (%s, %s, %s, %s, 0, %s, %s, %s, %s)",
            str(e.link_id),
            str(e.originator_id),
            str(e.role_id),
            e.max_uses,
            w.time(e.expires_at),
            e.actor_id,
            e.actor_email,
            w.time(e.timestamp),
        )

    @apply.register(Organization.InviteLinkDeleted)
    def _link_deleted(self, e: Organization.InviteLinkDeleted, w: Writer) -> None:
        w.run("UPDATE {invite_links} SET deleted_at = %s WHERE link_id = %s", w.time(e.timestamp), str(e.link_id))

    @apply.register(Organization.MemberJoinedByLink)
    def _joined_by_link(self, e: Organization.MemberJoinedByLink, w: Writer) -> None:
        w.run("UPDATE {invite_links} SET use_count = use_count + 1 WHERE link_id = %s", str(e.link_id))
        if e.cancelled_invitation_id is not None:
            w.run(_CLOSE, "cancelled", w.time(e.timestamp), e.actor_id, str(e.cancelled_invitation_id))
