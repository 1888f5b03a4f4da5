"""Request and response bodies: one marshmallow schema each, camelCase on the wire.

Request schemas refuse unknown fields (marshmallow's default RAISE) and wrong
types; the OpenAPI document is generated from these same schemas.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from membership.events import event_types
from membership.inputs import INVITATION_DAYS, INVITE_LINK_DAYS, MAX_LINK_USES
from membership.permissions import all_permissions
from membership.text import text_problem
from projections.invitations import INVITATION_STATUSES

MAX_PAGE = 200
# What membership.text refuses, as a pattern the OpenAPI document can declare (lone surrogates
# cannot be written in a JSON Schema pattern; PrintableText refuses them too).
UNPRINTABLE = "\\u0000-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069"
PRINTABLE_PATTERN = f"^[^{UNPRINTABLE}]*$"
# Names are stored with whitespace folded (str.split), so one of only spaces is refused (by the domain: 422).
SPACES = "\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NAME_PATTERN = f"^[{SPACES}]*[^{UNPRINTABLE}{SPACES}][^{UNPRINTABLE}]*$"
CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"  # base64url, unpadded (projections.engine.reading.encode_cursor)
EMAIL_DESCRIPTION = (
    "An e-mail address; internationalized ones (RFC 6531) too. It must also be deliverable and written in one"
    " script per part (membership.addresses), else 422 `invalid_value`"
)


class PrintableText(validate.Regexp):
    """The stored-text rule (no control characters, lone surrogates or bidi controls), declared as a pattern.

    A narrower `pattern` may be declared where the rest is refused later: a name of only spaces by the
    domain (422 `invalid_value`), a cursor the API did not make by the query (400 `invalid_cursor`).
    """

    def __init__(self, pattern: str = PRINTABLE_PATTERN) -> None:
        super().__init__(pattern)

    def __call__(self, value: Any) -> Any:
        problem = text_problem(value)
        if problem is not None:
            raise ValidationError(f"Must not contain {problem}.")
        return value


def text(low: int, high: int, pattern: str = PRINTABLE_PATTERN, **options: Any) -> fields.String:
    """A string field of `low` to `high` characters obeying the stored-text rule (see PrintableText)."""
    return fields.String(validate=[validate.Length(low, high), PrintableText(pattern)], **options)


def permission_id(**options: Any) -> fields.String:
    """One of the permissions a role can hold (`view|manage:resource`), declared as an enum."""
    return fields.String(
        validate=validate.OneOf(
            [p.id for p in all_permissions()], error="Unknown permission {input}: use one of {choices}."
        ),
        **options,
    )


def days(allowed: range, default: int | None = 7) -> fields.Integer:
    return fields.Integer(strict=True, load_default=default, validate=validate.Range(allowed.start, allowed.stop - 1))


# -- requests --------------------------------------------------------------------------------------------------
class OrganizationCreateSchema(Schema):
    name = text(1, 200, NAME_PATTERN, required=True)


class OrganizationUpdateSchema(Schema):
    name = text(1, 200, NAME_PATTERN, required=True)


class InviteSchema(Schema):
    email = text(1, 254, required=True, metadata={"format": "idn-email", "description": EMAIL_DESCRIPTION})
    roleId = fields.UUID(required=True)
    expiresInDays = days(INVITATION_DAYS)


class ResendSchema(Schema):
    expiresInDays = days(INVITATION_DAYS, default=None)


class RoleChangeSchema(Schema):
    roleId = fields.UUID(required=True)


class InviteLinkCreateSchema(Schema):
    roleId = fields.UUID(required=True)
    maxUses = fields.Integer(strict=True, load_default=0, validate=validate.Range(0, MAX_LINK_USES))
    expiresInDays = days(INVITE_LINK_DAYS)


class AcceptInviteSchema(Schema):
    token = text(1, 200, required=True)


class AcceptInviteLinkSchema(Schema):
    code = text(1, 200, required=True)


class RoleCreateSchema(Schema):
    name = text(1, 64, NAME_PATTERN, required=True)
    description = text(0, 500, load_default="")
    permissionIds = fields.List(permission_id(), required=True, validate=validate.Length(0, 16))


class RoleUpdateSchema(Schema):
    name = text(1, 64, NAME_PATTERN)
    description = text(0, 500)
    permissionIds = fields.List(permission_id(), validate=validate.Length(0, 16))


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_PAGE))
    cursor = text(1, 500, CURSOR_PATTERN, metadata={"description": "The previous page's `nextCursor`"})


def moment(description: str) -> fields.AwareDateTime:
    """An ISO 8601 date-time with its offset (`2026-03-01T00:00:00Z`)."""
    return fields.AwareDateTime(default_timezone=None, metadata={"description": description})


AS_OF = "The list as it was at this moment (view:members): a replay of the events recorded until then"


class MembersQuerySchema(PageQuerySchema):
    role = text(1, 64, metadata={"description": "A role id or a role name"})
    q = text(1, 200, metadata={"description": "Search in e-mail and name"})
    asOf = moment(AS_OF)


class RolesQuerySchema(PageQuerySchema):
    asOf = moment(AS_OF)


class InvitationsQuerySchema(PageQuerySchema):
    status = fields.String(load_default="pending", validate=validate.OneOf(INVITATION_STATUSES))
    asOf = moment(AS_OF)


class AuditQuerySchema(PageQuerySchema):
    type = text(1, 64, metadata={"description": "An event type (another is 400 unknown_event_type)",
                                 "enum": event_types()})  # fmt: skip
    actor = text(1, 254, metadata={"description": "A user id or e-mail"})
    since = fields.AwareDateTime(default_timezone=None)
    until = fields.AwareDateTime(default_timezone=None)
    member = fields.UUID(metadata={"description": "Events about this member (their id)"})
    email = text(1, 254, metadata={"description": "Events about this e-mail address (a member or an invitation)"})
    role = text(1, 64, metadata={"description": "Events naming this role (an id or a name)"})


class AccessReviewQuerySchema(Schema):
    permission = permission_id(required=True)
    since = fields.AwareDateTime(
        default_timezone=None, required=True, data_key="from", metadata={"description": "The window's start"}
    )
    until = fields.AwareDateTime(
        default_timezone=None, data_key="to", metadata={"description": "The window's end (included); default: now"}
    )
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))


# -- responses -------------------------------------------------------------------------------------------------
class MessageSchema(Schema):
    message = fields.String()


class ActorRefSchema(Schema):
    userId = fields.String(attribute="user_id")
    email = fields.String()


class RoleRefSchema(Schema):
    id = fields.String()
    name = fields.String()
    permissions = fields.List(fields.String())


class RoleSchema(RoleRefSchema):
    description = fields.String()
    isSystem = fields.Boolean(attribute="is_system")
    memberCount = fields.Integer(attribute="member_count")


class MemberSchema(Schema):
    id = fields.String()
    userId = fields.String(attribute="user_id")
    email = fields.String()
    name = fields.String()
    role = fields.Nested(RoleRefSchema)
    joinedAt = fields.DateTime(attribute="joined_at")
    lastActiveAt = fields.DateTime(attribute="last_active_at", allow_none=True)


class InvitationSchema(Schema):
    id = fields.String()
    email = fields.String()
    status = fields.String(metadata={"enum": ["pending", "accepted", "expired", "cancelled"]})
    role = fields.Nested(RoleRefSchema)
    invitedBy = fields.Nested(ActorRefSchema, attribute="invited_by")
    expiresAt = fields.DateTime(attribute="expires_at")
    createdAt = fields.DateTime(attribute="created_at")
    resentAt = fields.DateTime(attribute="resent_at", allow_none=True)
    resendCount = fields.Integer(attribute="resend_count")
    emailStatus = fields.String(
        attribute="email_status", metadata={"enum": ["queued", "sending", "sent", "retrying", "failed"]}
    )
    lastSentAt = fields.DateTime(attribute="last_sent_at", allow_none=True)
    lastError = fields.String(attribute="last_error", allow_none=True)
    nextAttemptAt = fields.DateTime(attribute="next_attempt_at", allow_none=True)


class InviteLinkSchema(Schema):
    id = fields.String(attribute="record.id")
    code = fields.String()
    url = fields.String()
    role = fields.Nested(RoleRefSchema, attribute="record.role")
    maxUses = fields.Integer(attribute="record.max_uses")
    useCount = fields.Integer(attribute="record.use_count")
    expiresAt = fields.DateTime(attribute="record.expires_at")
    createdBy = fields.Nested(ActorRefSchema, attribute="record.created_by")
    createdAt = fields.DateTime(attribute="record.created_at")


class OfferedRoleSchema(RoleRefSchema):
    description = fields.String()
    allows = fields.List(fields.String(), metadata={"description": "What the role allows, in words"})


class OrganizationRefSchema(Schema):
    id = fields.String(attribute="organization_id")
    name = fields.String(attribute="organization_name")


class PreviewSchema(Schema):
    """What an invitation or invite link offers, for its holder (no token needed)."""

    organization = fields.Function(lambda offer: OrganizationRefSchema().dump(offer), metadata={"type": "object"})
    role = fields.Nested(OfferedRoleSchema, allow_none=True, metadata={"description": "null if since deleted"})
    expiresAt = fields.DateTime(attribute="expires_at")


class InvitationPreviewSchema(PreviewSchema):
    id = fields.String(attribute="invitation_id")
    email = fields.String(metadata={"description": "The invited address: only it can accept"})
    invitedBy = fields.String(attribute="offered_by", metadata={"description": "The inviter's name or e-mail"})
    status = fields.String(metadata={"enum": ["pending", "accepted", "expired", "cancelled"]})


class InviteLinkPreviewSchema(PreviewSchema):
    id = fields.String(attribute="link_id")
    createdBy = fields.String(attribute="offered_by", metadata={"description": "The creator's name or e-mail"})
    maxUses = fields.Integer(attribute="max_uses", metadata={"description": "0: unlimited"})
    useCount = fields.Integer(attribute="use_count")
    status = fields.String(metadata={"enum": ["active", "expired", "deleted", "used_up"]})


class PreviewTokenQuerySchema(Schema):
    token = text(1, 200, required=True)


class PreviewCodeQuerySchema(Schema):
    code = text(1, 200, required=True)


class OrganizationSchema(Schema):
    id = fields.String()
    name = fields.String()
    createdAt = fields.DateTime(attribute="created_at")


class MembershipSchema(Schema):
    id = fields.String()
    name = fields.String()
    role = fields.Nested(RoleRefSchema)


class OrganizationListSchema(Schema):
    organizations = fields.List(fields.Nested(MembershipSchema), attribute="items")
    total = fields.Integer()
    nextCursor = fields.String(attribute="next_cursor", allow_none=True)


class MemberListSchema(Schema):
    members = fields.List(fields.Nested(MemberSchema), attribute="items")
    total = fields.Integer()
    nextCursor = fields.String(attribute="next_cursor", allow_none=True)


class MemberChangedSchema(Schema):
    message = fields.String()
    member = fields.Nested(MemberSchema)


class InvitationListSchema(Schema):
    invitations = fields.List(fields.Nested(InvitationSchema), attribute="items")
    total = fields.Integer()
    nextCursor = fields.String(attribute="next_cursor", allow_none=True)


class InviteLinkListSchema(Schema):
    inviteLinks = fields.List(fields.Nested(InviteLinkSchema), attribute="items")
    total = fields.Integer()
    nextCursor = fields.String(attribute="next_cursor", allow_none=True)


class JoinedSchema(Schema):
    organizationId = fields.String()
    member = fields.Nested(MemberSchema)


class RoleListSchema(Schema):
    roles = fields.List(fields.Nested(RoleSchema), attribute="items")
    total = fields.Integer()
    nextCursor = fields.String(attribute="next_cursor", allow_none=True)


class PermissionSchema(Schema):
    id = fields.String()
    action = fields.String()
    resource = fields.String()
    description = fields.String()


class PermissionListSchema(Schema):
    permissions = fields.List(fields.Nested(PermissionSchema))


class MeSchema(Schema):
    userId = fields.String()
    email = fields.String()
    organizationId = fields.String()
    member = fields.Nested(MemberSchema)
    role = fields.Nested(RoleRefSchema)
    permissions = fields.List(fields.String())


class AuditEventSchema(Schema):
    position = fields.Integer()
    type = fields.String(attribute="event_type")
    occurredAt = fields.DateTime(attribute="occurred_at")
    actor = fields.Function(lambda e: {"userId": e.actor_id, "email": e.actor_email})
    target = fields.Function(lambda e: {"type": e.target_type, "id": e.target_id, "label": e.target_label})
    details = fields.Dict()


class ChangeSchema(Schema):
    how = fields.String(metadata={"enum": ["created", "invitation", "invite_link", "role_change",
                                           "ownership_transfer", "removed", "left", "organization_deleted", "erased"]})
    by = fields.Nested(ActorRefSchema)
    via = fields.String(allow_none=True, metadata={"description": "The invitation or invite link"})


class IntervalSchema(Schema):
    role = fields.Nested(RoleRefSchema, metadata={"description": "The role and its permissions as they were"})
    since = fields.DateTime(attribute="from_at")
    until = fields.DateTime(attribute="to_at", allow_none=True, metadata={"description": "null: still held"})
    granted = fields.Nested(ChangeSchema)
    ended = fields.Nested(ChangeSchema, allow_none=True)


class MemberHistorySchema(Schema):
    memberId = fields.String(attribute="member_id")
    userId = fields.String(attribute="user_id")
    email = fields.String()
    name = fields.String()
    intervals = fields.List(fields.Nested(IntervalSchema))


class AccessReviewSchema(Schema):
    permission = fields.String()
    since = fields.DateTime()
    until = fields.DateTime()
    holders = fields.List(fields.Nested(MemberHistorySchema))


class AuditLogSchema(Schema):
    events = fields.List(fields.Nested(AuditEventSchema))
    nextCursor = fields.String(allow_none=True)


class HealthSchema(Schema):
    status = fields.String(metadata={"enum": ["ok", "degraded"]})
    database = fields.String()
    position = fields.Integer()
    projections = fields.Dict(metadata={"description": "Per read model: position, lag, parked, stalled, error"})
    parked = fields.List(fields.Dict(), metadata={"description": "Events read models hold back, oldest first"})
    mail = fields.Dict(metadata={"description": "Invitation e-mail: status (ok or degraded), retrying, failures"})


class BulkRoleSchema(Schema):
    memberIds = fields.List(fields.UUID(), required=True, validate=validate.Length(1, 10_000))
    roleId = fields.UUID(required=True)


class ErasureRequestSchema(Schema):
    email = text(3, 254, metadata={"description": "The person's e-mail address"})
    userId = text(1, 255, metadata={"description": "The person's user id: every address they used is erased"})

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **_: Any) -> None:
        if ("email" in data) == ("userId" in data):
            raise ValidationError("Give exactly one of email and userId.", "_schema")


class ErasureSchema(Schema):
    pseudonyms = fields.List(fields.String(), metadata={"description": "The erased keys' ids (no personal data)"})
    organizations = fields.List(fields.String(), metadata={"description": "Where PersonErased was recorded"})
    snapshotsDeleted = fields.Integer(attribute="snapshots_deleted")
    mailRowsScrubbed = fields.Integer(attribute="mail_rows_scrubbed")
    responsesDeleted = fields.Integer(attribute="responses_deleted")
    outboxFilesDeleted = fields.Integer(attribute="outbox_files_deleted")
    rebuilt = fields.Dict(keys=fields.String(), values=fields.Integer(),
                          metadata={"description": "Each read model's new generation"})  # fmt: skip


class BulkRemoveSchema(Schema):
    memberIds = fields.List(fields.UUID(), required=True, validate=validate.Length(1, 10_000))


class JobItemSchema(Schema):
    memberId = fields.String(attribute="member_id")
    status = fields.String(metadata={"enum": ["succeeded", "failed"]})
    code = fields.String()
    message = fields.String()


class JobSummarySchema(Schema):
    id = fields.String()
    type = fields.String(metadata={"enum": ["bulk_role_change", "bulk_remove"]})
    status = fields.String(
        metadata={"enum": ["queued", "running", "succeeded", "partially_succeeded", "failed", "cancelled"]}
    )
    total = fields.Integer()
    processed = fields.Integer()
    succeeded = fields.Integer()
    failed = fields.Integer()
    cancelRequested = fields.Boolean(attribute="cancel_requested")
    createdBy = fields.Nested(ActorRefSchema, attribute="created_by")
    createdAt = fields.DateTime(attribute="created_at")
    startedAt = fields.DateTime(attribute="started_at", allow_none=True)
    finishedAt = fields.DateTime(attribute="finished_at", allow_none=True)


class JobSchema(JobSummarySchema):
    results = fields.List(fields.Nested(JobItemSchema))


class JobEnvelopeSchema(Schema):
    job = fields.Nested(JobSchema)


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(JobSummarySchema), attribute="items")
    total = fields.Integer()
    nextCursor = fields.String(attribute="next_cursor", allow_none=True)
