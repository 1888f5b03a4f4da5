"""Temporal queries: an organization as it was at a given moment, computed from its events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from membership import Organization, Organizations
from membership.application import project_organization


@dataclass(frozen=True)
class PastState:
    """What `membership audit replay --at` prints."""

    at: datetime
    version: int
    name: str
    members: list[dict[str, Any]]
    roles: list[dict[str, Any]]
    pending_invitations: list[dict[str, Any]]
    invite_links: list[dict[str, Any]]


def organization_at(organizations: Organizations, organization_id: UUID, at: datetime) -> PastState | None:
    """Replays the organization's events in the order of its stream, up to and including the last one recorded
    at or before `at`; None if there is none (it did not exist yet).

    The stream's order is the truth: an event recorded by a process whose clock was behind may carry an earlier
    timestamp than events before it, and it still happened after them. So every event before that last one is
    replayed, whatever its timestamp (the access read model, `projections.access`, answers the same)."""
    events: list[Organization.Event] = list(organizations.events.get(organization_id))  # type: ignore[attr-defined, arg-type]
    last = max((n for n, event in enumerate(events) if event.timestamp <= at), default=-1)
    org = project_organization(None, events[: last + 1])
    return None if org is None else describe(org, at)


def describe(org: Organization, at: datetime) -> PastState:
    role_name = {role.id: role.name for role in org.roles.values()}
    members = [
        {
            "id": str(m.id),
            "userId": m.user_id,
            "email": m.email,
            "name": m.name,
            "role": role_name[m.role_id],
            "roleId": str(m.role_id),
            "joinedAt": m.joined_at.isoformat(),
        }
        for m in sorted(org.members.values(), key=lambda m: (m.joined_at, str(m.id)))
    ]
    roles = [
        {"id": str(r.id), "name": r.name, "isSystem": r.system, "permissions": sorted(r.permissions)}
        for r in org.roles.values()
    ]
    pending = [
        {
            "id": str(i.id),
            "email": i.email,
            "role": role_name[i.role_id],
            "invitedBy": i.invited_by,
            "expiresAt": i.expires_at.isoformat(),
        }
        for i in org.invitations.values()
        if org.invitation_status(i, at) == "pending"
    ]
    links = [
        {
            "id": str(link.id),
            "role": role_name.get(link.role_id, str(link.role_id)),
            "maxUses": link.max_uses,
            "useCount": link.use_count,
            "expiresAt": link.expires_at.isoformat(),
        }
        for link in org.links.values()
        if not link.deleted and at < link.expires_at
    ]
    return PastState(at, org.version, org.name, members, roles, pending, links)
