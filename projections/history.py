"""Temporal queries: an organization as it was at a given moment, computed from its events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile
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
    """Replays the events that happened at or before `at`; None if the organization did not exist yet."""
    events = takewhile(lambda event: event.timestamp <= at, organizations.events.get(organization_id))  # type: ignore[attr-defined]
    org = project_organization(None, events)
    return None if org is None else describe(org, at)


def describe(org: Organization, at: datetime) -> PastState:
    role_name = {role_id: role["name"] for role_id, role in org.roles.items()}
    members = [
        {
            "id": member_id,
            "userId": m["user_id"],
            "email": m["email"],
            "name": m["name"],
            "role": role_name[m["role_id"]],
            "roleId": m["role_id"],
            "joinedAt": m["joined_at"].isoformat(),
        }
        for member_id, m in sorted(org.members.items(), key=lambda item: (item[1]["joined_at"], item[0]))
    ]
    roles = [
        {"id": role_id, "name": r["name"], "isSystem": r["system"], "permissions": r["permissions"]}
        for role_id, r in org.roles.items()
    ]
    pending = [
        {
            "id": invitation_id,
            "email": i["email"],
            "role": role_name[i["role_id"]],
            "invitedBy": i["invited_by"],
            "expiresAt": i["expires_at"].isoformat(),
        }
        for invitation_id, i in org.invitations.items()
        if org.invitation_status(i, at) == "pending"
    ]
    links = [
        {
            "id": link_id,
            "role": role_name.get(link["role_id"], link["role_id"]),
            "maxUses": link["max_uses"],
            "useCount": link["use_count"],
            "expiresAt": link["expires_at"].isoformat(),
        }
        for link_id, link in org.links.items()
        if not link["deleted"] and at < link["expires_at"]
    ]
    return PastState(at, org.version, org.name, members, roles, pending, links)
