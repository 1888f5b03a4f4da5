"""Auditors' questions, answered from the access read model (`projections.access`), for members with
view:members: every role a member held and who granted it, and who held a permission over a period (the
question of SOC 2 and ISO 27001 access reviews), as JSON or CSV. The lists "as of" a moment are the `asOf`
parameter of `GET /api/members`, `/api/roles` and `/api/invitations`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import Response, jsonify

from api.auth import Membership, requires
from api.blueprint import Blueprint
from api.context import services, utc_now
from api.errors import ApiError
from api.problems import answers
from api.schemas import AccessReviewQuerySchema, AccessReviewSchema, MemberHistorySchema
from membership import authorization
from membership import exceptions as err
from membership.permissions import VIEW_MEMBERS
from projections import access

blp = Blueprint("history", __name__, url_prefix="/api", description="Access history, for auditors")


def check_history_reader(me: Membership) -> None:
    """The organization's history is for members with view:members (as every list "as of" a moment)."""
    authorization.check_permission(me.member.role.permissions, VIEW_MEMBERS)


@blp.route("/members/<uuid:member_id>/history", methods=["GET"])
@answers(err.MemberNotFoundError)
@blp.response(200, MemberHistorySchema)
@requires(VIEW_MEMBERS)
def member_history(me: Membership, member_id: UUID) -> Any:
    """Every role the member held, oldest first: when, granted how and by whom, ended how and by whom (also
    for members who have left or were removed)."""
    holder = access.member_history(services().read_db, me.organization_id, member_id)
    if holder is None:
        raise ApiError(404, "member_not_found", f"No member {member_id} in this organization, now or before.")
    return jsonify(holder.as_json())


@blp.route("/access-review", methods=["GET"])
@answers({400: ("invalid_window",)})
@blp.arguments(AccessReviewQuerySchema, location="query")
@blp.response(200, AccessReviewSchema, description="JSON, or CSV (`format=csv`): one row per interval")
@blp.doc(responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
@requires(VIEW_MEMBERS)
def access_review(me: Membership, args: dict[str, Any]) -> Any:
    """Everyone who held `permission` at any moment from `from` to `to`, each with the intervals that gave it
    and who granted them."""
    since, until = args["since"], args.get("until") or utc_now()
    if until < since:
        raise ApiError(400, "invalid_window", "`to` is before `from`.")
    holders = access.access_review(services().read_db, me.organization_id, args["permission"], since, until)
    if args["format"] == "csv":
        filename = f"access-review-{args['permission'].replace(':', '-')}.csv"
        return Response(access.review_csv(holders), content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip
    return jsonify(access.review_as_json(args["permission"], since, until, holders))
