"""`/api/audit-log`: the organization's history, newest first (manage:members)."""

from __future__ import annotations

from typing import Any

from api.auth import Membership, requires
from api.blueprint import Blueprint
from api.context import services
from api.errors import ApiError
from api.problems import answers
from api.roles import role_named
from api.schemas import AuditLogSchema, AuditQuerySchema
from membership import exceptions as err
from membership.events import event_types
from membership.permissions import MANAGE_MEMBERS
from projections import audit as audit_reads
from projections import roles as roles_reads
from projections.engine import reading

blp = Blueprint("audit", __name__, url_prefix="/api", description="Audit log")
EVENT_TYPES = frozenset(event_types())


@blp.route("/audit-log", methods=["GET"])
@answers({400: ("unknown_event_type",)}, err.RoleNotFoundError)
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditLogSchema)
@requires(MANAGE_MEMBERS)
def audit_log(me: Membership, args: dict[str, Any]) -> Any:
    """The organization's events, newest first, filtered by type, actor, time, the member or e-mail an event
    is about and a role it names (manage:members). Joins name who granted the access (`details.grantedBy`)."""
    if args.get("type") and args["type"] not in EVENT_TYPES:
        raise ApiError(400, "unknown_event_type", f"{args['type']!r} is not an event type; use one of "
                       f"{', '.join(sorted(EVENT_TYPES))}.")  # fmt: skip
    db = services().read_db
    role = role_named(roles_reads.list_roles(db, me.organization_id, counted=False), args.get("role"))
    before = 0
    if args.get("cursor"):
        try:
            (before,) = reading.decode_cursor(args["cursor"], 1)
        except ValueError:
            raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.") from None
    events = audit_reads.audit_page(
        services().read_db, me.organization_id, after=int(before), limit=args["limit"] + 1, newest_first=True,
        since=args.get("since"), until=args.get("until"), event_type=args.get("type"), actor=args.get("actor"),
        member_id=str(args["member"]) if args.get("member") else None, email=args.get("email"), role_id=role,
    )  # fmt: skip
    more = len(events) > args["limit"]
    events = events[: args["limit"]]
    return {"events": events, "nextCursor": reading.encode_cursor(events[-1].position) if more else None}
