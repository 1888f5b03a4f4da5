"""`/api/audit-log`: the organization's history, newest first (manage:members)."""

from __future__ import annotations

from typing import Any

from api.auth import Membership, requires
from api.blueprint import Blueprint
from api.context import services
from api.errors import ApiError
from api.schemas import AuditLogSchema, AuditQuerySchema
from membership.permissions import MANAGE_MEMBERS
from projections import audit as audit_reads
from projections.engine import reading

blp = Blueprint("audit", __name__, url_prefix="/api", description="Audit log")


@blp.route("/audit-log", methods=["GET"])
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditLogSchema)
@requires(MANAGE_MEMBERS)
def audit_log(me: Membership, args: dict[str, Any]) -> Any:
    before = 0
    if args.get("cursor"):
        try:
            (before,) = reading.decode_cursor(args["cursor"], 1)
        except ValueError:
            raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.") from None
    events = audit_reads.audit_page(
        services().read_db, me.organization_id, after=int(before), limit=args["limit"] + 1, newest_first=True,
        since=args.get("since"), until=args.get("until"), event_type=args.get("type"), actor=args.get("actor"),
    )  # fmt: skip
    more = len(events) > args["limit"]
    events = events[: args["limit"]]
    return {"events": events, "nextCursor": reading.encode_cursor(events[-1].position) if more else None}
