"""Every projection by name (the names `membership projections ...` takes)."""

from __future__ import annotations

from projections.access import AccessProjection
from projections.audit import AuditProjection
from projections.engine.base import Projection
from projections.invitations import InvitationsProjection
from projections.jobs import JobsProjection
from projections.members import MembersProjection
from projections.roles import RolesProjection

PROJECTIONS: dict[str, type[Projection]] = {
    projection.name: projection
    for projection in (
        MembersProjection, RolesProjection, InvitationsProjection, AuditProjection, JobsProjection, AccessProjection
    )
}


def fingerprints(name: str) -> tuple[str, str]:
    """The projection's definition and columns fingerprints, as generations record them."""
    projection = PROJECTIONS[name]
    return projection.fingerprint(), projection.columns_fingerprint()
