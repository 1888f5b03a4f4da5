"""`/api/organizations`: create one (becoming its Owner), list the caller's."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from api.auth import current_caller
from api.context import services, settled
from api.schemas import OrganizationCreateSchema, OrganizationListSchema, OrganizationSchema
from projections import queries

blp = Blueprint("organizations", __name__, url_prefix="/api", description="Organizations (tenants)")


@blp.route("/organizations", methods=["POST"])
@blp.arguments(OrganizationCreateSchema)
@blp.response(201, OrganizationSchema)
def create_organization(body: dict[str, Any]) -> Any:
    """Create an organization; the caller becomes its Owner."""
    receipt = settled(services().organizations.create_organization(current_caller().actor, body["name"]))
    return queries.get_organization(services().read_db, receipt.organization_id)


@blp.route("/organizations", methods=["GET"])
@blp.response(200, OrganizationListSchema)
def list_organizations() -> Any:
    """The organizations the caller belongs to, with their role in each."""
    memberships = queries.organizations_of(services().read_db, current_caller().actor.user_id)
    return {"organizations": [{"id": o.id, "name": o.name, "role": o.role} for o in memberships]}
