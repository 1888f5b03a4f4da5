"""`/api/organizations`: create one (becoming its Owner), list the caller's."""

from __future__ import annotations

from typing import Any

from api.auth import current_caller, current_caller_with_email
from api.blueprint import Blueprint
from api.commands import execute
from api.context import services
from api.paging import checked_cursor
from api.problems import RATE_LIMITED, WITH_EMAIL, answers
from api.ratelimit import check_organization_rate
from api.schemas import OrganizationCreateSchema, OrganizationListSchema, OrganizationSchema, PageQuerySchema
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
