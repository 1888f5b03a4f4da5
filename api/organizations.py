"""`/api/organizations`: create one (becoming its Owner), list the caller's, rename or delete one."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.auth import Membership, current_caller, current_caller_with_email, requires
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services
from api.paging import checked_cursor
from api.problems import RATE_LIMITED, WITH_EMAIL, answers
from api.ratelimit import check_organization_rate
from api.schemas import (
    MessageSchema,
    OrganizationCreateSchema,
    OrganizationListSchema,
    OrganizationSchema,
    OrganizationUpdateSchema,
    PageQuerySchema,
)
from membership import exceptions as err
from projections import members as members_reads

blp = Blueprint("organizations", __name__, url_prefix="/api", description="Organizations (tenants)")


@blp.route("/organizations", methods=["POST"])
@answers(WITH_EMAIL, RATE_LIMITED, err.InvalidValueError)
@blp.arguments(OrganizationCreateSchema)
@blp.response(201, OrganizationSchema)
def create_organization(body: dict[str, Any]) -> Any:
    """Create an organization; the caller becomes its Owner (MEMBERSHIP_ORGANIZATIONS_PER_HOUR per caller)."""
    actor = current_caller_with_email()
    check_organization_rate(actor.user_id)
    receipt = execute(lambda: services().organizations.create_organization(actor, body["name"]))
    return members_reads.get_organization(services().read_db, receipt.organization_id)


@blp.route("/organizations", methods=["GET"])
@answers()
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, OrganizationListSchema)
def list_organizations(args: dict[str, Any]) -> Any:
    """The organizations the caller belongs to, with their role in each, oldest first."""
    user_id = current_caller().actor.user_id
    with checked_cursor():
        return members_reads.organizations_of(services().read_db, user_id, args["limit"], args.get("cursor"))


@blp.route("/organizations/<uuid:organization_id>", methods=["GET"])
@blp.response(200, OrganizationSchema)
@requires()
def get_organization(me: Membership, organization_id: UUID) -> Any:
    """One organization the caller belongs to."""
    return members_reads.get_organization(services().read_db, me.organization_id)


@blp.route("/organizations/<uuid:organization_id>", methods=["PATCH"])
@answers(err.MissingPermissionError, err.InvalidValueError, err.ConflictError)
@blp.arguments(OrganizationUpdateSchema)
@blp.response(200, OrganizationSchema)
@requires()
def rename_organization(me: Membership, body: dict[str, Any], organization_id: UUID) -> Any:
    """Rename the organization (manage:settings)."""
    execute(lambda: services().organizations.rename_organization(me.organization_id, me.actor, body["name"]))
    return members_reads.get_organization(services().read_db, me.organization_id)


@blp.route("/organizations/<uuid:organization_id>", methods=["DELETE"])
@answers(err.OwnerOnlyError, err.ConflictError)
@blp.response(200, MessageSchema)
@requires()
def delete_organization(me: Membership, organization_id: UUID) -> Any:
    """Delete the organization (Owner only). Every member loses access at once; pending invitations are
    cancelled and invite links stop working. Its history stays for auditors."""
    execute(lambda: services().organizations.delete_organization(me.organization_id, me.actor))
    return {"message": "The organization was deleted."}
