"""Read model: every invitation with its status, and every invite link.

`expired` is not stored for a pending invitation: queries compare `expires_at`
with the current time, so expiry needs no event. Codes and tokens are never
stored; the API derives them from the write side when it must show one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from membership.organization import Organization
from projections import outbox
from projections.engine.base import Projection, Writer
from projections.engine.reading import Key, Page, cursor_after, ordered_page, read
from projections.engine.sql import ReadDatabase
from projections.members import ActorRef
from projections.roles import ROLE_COLUMNS, RoleRecord, role_record


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

    @apply.register(Organization.OrganizationDeleted)
    def _organization_deleted(self, e: Organization.OrganizationDeleted, w: Writer) -> None:
        # Nobody can list them any more, and the invited addresses are personal data kept for no one.
        self.delete_organization_rows(w, str(e.originator_id))

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

    @apply.register(Organization.PersonErased)
    def _erased(self, e: Organization.PersonErased, w: Writer) -> None:
        for invitation_id in e.cancelled_invitation_ids:
            self._close(w, invitation_id, "cancelled", e)

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


# -- reads -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InvitationRecord:
    id: str
    organization_id: str
    email: str
    status: str  # pending, accepted, expired or cancelled (expiry computed at read time)
    role: RoleRecord
    invited_by_id: str
    invited_by_email: str
    created_at: datetime
    expires_at: datetime
    resent_at: datetime | None
    resend_count: int
    closed_at: datetime | None
    email_status: str = "queued"  # queued, sending, sent, retrying or failed: the e-mail for the current token
    last_sent_at: datetime | None = None
    last_error: str | None = None  # why the last attempt failed (retrying, failed; or while sending again)
    next_attempt_at: datetime | None = None  # when the mailer tries next (queued, retrying)

    @property
    def invited_by(self) -> ActorRef:
        return ActorRef(self.invited_by_id, self.invited_by_email)


@dataclass(frozen=True)
class InviteLinkRecord:
    id: str
    organization_id: str
    role: RoleRecord
    max_uses: int
    use_count: int
    expires_at: datetime
    created_by_id: str
    created_by_email: str
    created_at: datetime
    deleted_at: datetime | None

    @property
    def created_by(self) -> ActorRef:
        return ActorRef(self.created_by_id, self.created_by_email)


INVITATION_STATUSES = ("pending", "accepted", "expired", "cancelled", "all")


# The e-mail of the invitation's current token: its delivery is the mailer's latest one created at or after
# the invitation was (re-)sent (one indexed lookup per invitation).
_INVITATION_SELECT = (
    "SELECT i.invitation_id, i.organization_id, i.email, i.status, i.invited_by_id, i.invited_by_email, "
    "i.created_at, i.expires_at, i.resent_at, i.resend_count, i.closed_at, "
    f"{ROLE_COLUMNS}, i.email_status, i.last_sent_at, d.status, d.last_error, d.next_attempt_at "
    "FROM {invitations} i JOIN {roles} r ON r.role_id = i.role_id "
    "LEFT JOIN mail_deliveries d ON d.delivery_id = (SELECT m.delivery_id FROM mail_deliveries m "
    "WHERE m.invitation_id = i.invitation_id AND m.created_at >= COALESCE(i.resent_at, i.created_at) "
    "ORDER BY m.created_at DESC LIMIT 1)"
)


_LINK_SELECT = (
    "SELECT l.link_id, l.organization_id, l.max_uses, l.use_count, l.expires_at, l.created_by_id, "
    f"l.created_by_email, l.created_at, l.deleted_at, {ROLE_COLUMNS} "
    "FROM {invite_links} l JOIN {roles} r ON r.role_id = l.role_id"
)


def _invitation(db: ReadDatabase, row: Sequence[Any], now: datetime) -> InvitationRecord:
    t = db.from_db_time
    expires_at = t(row[7])
    assert expires_at is not None
    status = "expired" if row[3] == "pending" and expires_at <= now else row[3]
    return InvitationRecord(
        row[0], row[1], row[2], status, role_record(db, row[11:16]), row[4], row[5],
        db.when(row[6]), expires_at, t(row[8]), int(row[9]), t(row[10]), *_email(db, row[16], row[17:21]),
    )  # fmt: skip


def _email(db: ReadDatabase, recorded: str, columns: Sequence[Any]) -> tuple[str, Any, str | None, Any]:
    """email_status, last_sent_at, last_error, next_attempt_at: recorded outcomes (events) first, then the mailer's row."""
    last_sent_at, state, error, next_attempt_at = columns
    if recorded in ("sent", "failed") or state in (None, outbox.SKIPPED):
        status = recorded
    else:
        status = "retrying" if state == outbox.QUEUED and error is not None else state
    waiting = status in ("queued", "retrying") and state == outbox.QUEUED
    shown_error = error if status in ("retrying", "sending", "failed") else None
    return status, db.from_db_time(last_sent_at), shown_error, db.from_db_time(next_attempt_at) if waiting else None


def _link(db: ReadDatabase, row: Sequence[Any]) -> InviteLinkRecord:
    t, w = db.from_db_time, db.when
    return InviteLinkRecord(
        row[0],
        row[1],
        role_record(db, row[9:14]),
        int(row[2]),
        int(row[3]),
        w(row[4]),
        row[5],
        row[6],
        w(row[7]),
        t(row[8]),
    )


_INVITATION_KEYS = (Key("i.created_at", descending=True, kind=datetime), Key("i.invitation_id", descending=True))


def list_invitations(
    db: ReadDatabase,
    organization_id: UUID,
    now: datetime,
    status: str = "pending",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[InvitationRecord]:
    """Newest first. `expired` means stored as pending (or replaced) with the expiry passed."""
    where, params = status_filter(db, status, now)
    total, rows, more = ordered_page(
        db, "{invitations} i", _INVITATION_SELECT, " AND ".join(["i.organization_id = %s", *where]),
        [str(organization_id), *params], _INVITATION_KEYS, cursor, limit,
    )  # fmt: skip
    items = [_invitation(db, row, now) for row in rows]
    return Page(items, total, cursor_after(items[-1].created_at, items[-1].id) if more else None)


def status_filter(db: ReadDatabase, status: str, now: datetime) -> tuple[list[str], list[Any]]:
    """SQL conditions on `i` (and their parameters) for invitations of `status` at `now` ("all": none)."""
    moment = db.to_db_time(now)
    if status == "pending":
        return ["i.status = 'pending' AND i.expires_at > %s"], [moment]
    if status == "expired":
        return ["(i.status = 'expired' OR (i.status = 'pending' AND i.expires_at <= %s))"], [moment]
    if status in ("accepted", "cancelled"):
        return ["i.status = %s"], [status]
    return [], []


def get_invitation(
    db: ReadDatabase, organization_id: UUID, invitation_id: UUID, now: datetime
) -> InvitationRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            f"{_INVITATION_SELECT} WHERE i.organization_id = %s AND i.invitation_id = %s",
            str(organization_id),
            str(invitation_id),
        )
    return _invitation(db, rows[0], now) if rows else None


_LINK_KEYS = (Key("l.created_at", descending=True, kind=datetime), Key("l.link_id"))


def list_invite_links(
    db: ReadDatabase, organization_id: UUID, limit: int = 50, cursor: str | None = None
) -> Page[InviteLinkRecord]:
    """Links not deleted, newest first (expired and used-up ones included, so admins see them)."""
    total, rows, more = ordered_page(
        db, "{invite_links} l", _LINK_SELECT, "l.organization_id = %s AND l.deleted_at IS NULL",
        [str(organization_id)], _LINK_KEYS, cursor, limit,
    )  # fmt: skip
    links = [_link(db, row) for row in rows]
    return Page(links, total, cursor_after(links[-1].created_at, links[-1].id) if more else None)


def get_invite_link(db: ReadDatabase, organization_id: UUID, link_id: UUID) -> InviteLinkRecord | None:
    with read(db) as tables:
        rows = tables.fetch(
            f"{_LINK_SELECT} WHERE l.organization_id = %s AND l.link_id = %s", str(organization_id), str(link_id)
        )
    return _link(db, rows[0]) if rows else None
