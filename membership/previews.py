"""What an invitation or an invite link offers, as its holder sees it before accepting.

The accept pages and the JSON previews show these facts; the application builds them
(`Organizations.preview_invitation`, `.preview_invite_link`) after checking the token or code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from membership.inputs import Actor, normalize_email
from membership.organization import Organization
from membership.state import Invitation, InvitationStatus, InviteLink, Role, key_of

LinkStatus = Literal["active", "expired", "deleted", "used_up"]


@dataclass(frozen=True)
class Offer:
    """What joining gives, and who offers it."""

    organization_id: UUID
    organization_name: str
    role: Role | None  # None only once a closed invitation's or link's role was deleted
    offered_by: str  # the inviter's or link creator's name (else e-mail); "" once they left
    expires_at: datetime
    viewer_is_member: bool  # the person looking is already a member (False when nobody is signed in)


@dataclass(frozen=True)
class InvitationPreview(Offer):
    invitation_id: UUID
    email: str  # the invited address
    status: InvitationStatus  # pending, accepted, expired or cancelled

    def is_for(self, viewer: Actor) -> bool:
        return normalize_email(viewer.email) == self.email


@dataclass(frozen=True)
class InviteLinkPreview(Offer):
    link_id: UUID
    max_uses: int  # 0: unlimited
    use_count: int
    status: LinkStatus
    viewer_used_it: bool  # the person looking already joined through this link


def of_invitation(org: Organization, invitation: Invitation, now: datetime, viewer: Actor | None) -> InvitationPreview:
    return InvitationPreview(
        **_offer(org, invitation.role_id, invitation.invited_by, invitation.expires_at, viewer),
        invitation_id=invitation.id,
        email=invitation.email,
        status=org.invitation_status(invitation, now),
    )


def of_invite_link(org: Organization, link: InviteLink, now: datetime, viewer: Actor | None) -> InviteLinkPreview:
    return InviteLinkPreview(
        **_offer(org, link.role_id, link.created_by, link.expires_at, viewer),
        link_id=link.id,
        max_uses=link.max_uses,
        use_count=link.use_count,
        status=_link_status(org, link, now),
        viewer_used_it=viewer is not None and viewer.user_id in org.redemptions.get(key_of(link.id), {}),
    )


def _offer(
    org: Organization, role_id: UUID, offered_by: str, expires_at: datetime, viewer: Actor | None
) -> dict[str, Any]:
    offerer = org.member_for_user(offered_by)
    is_member = viewer is not None and (
        viewer.user_id in org.member_by_user or normalize_email(viewer.email) in org.member_by_email
    )
    return {
        "organization_id": org.id,
        "organization_name": org.name,
        "role": org.roles.get(key_of(role_id)),
        "offered_by": "" if offerer is None else (offerer.name or offerer.email),
        "expires_at": expires_at,
        "viewer_is_member": is_member,
    }


def _link_status(org: Organization, link: InviteLink, now: datetime) -> LinkStatus:
    if link.deleted:
        return "deleted"
    if org.is_expired(link, now):
        return "expired"
    if link.max_uses and link.use_count >= link.max_uses:
        return "used_up"
    return "active"
