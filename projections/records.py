"""What the read models answer with: plain frozen records, no SQL rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ActorRef:
    """Who did something: the user id from their token, and their e-mail then."""

    user_id: str
    email: str


@dataclass(frozen=True)
class RoleRecord:
    id: str
    name: str
    description: str
    is_system: bool
    permissions: tuple[str, ...]
    member_count: int = 0


@dataclass(frozen=True)
class MemberRecord:
    id: str
    organization_id: str
    user_id: str
    email: str
    name: str
    role: RoleRecord
    joined_at: datetime
    last_active_at: datetime | None


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


@dataclass(frozen=True)
class OrganizationRecord:
    id: str
    name: str
    created_at: datetime
    role: RoleRecord | None = None  # the caller's role, when listed for a user


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    next_cursor: str | None


@dataclass(frozen=True)
class JobItemRecord:
    member_id: str
    status: str  # succeeded or failed
    code: str
    message: str


@dataclass(frozen=True)
class JobRecord:
    id: str
    organization_id: str
    type: str
    status: str
    total: int
    processed: int
    succeeded: int
    created_by: ActorRef
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    results: tuple[JobItemRecord, ...] = ()

    @property
    def failed(self) -> int:
        return self.processed - self.succeeded
