"""Request and response bodies: one marshmallow schema each, camelCase on the wire.

Request schemas refuse unknown fields (marshmallow's default RAISE) and wrong
types; the OpenAPI document is generated from these same schemas.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from membership.domain import INVITATION_DAYS, INVITE_LINK_DAYS, MAX_LINK_USES
from projections.queries import INVITATION_STATUSES

MAX_PAGE = 200


def days(allowed: range, default: int | None = 7) -> fields.Integer:
    return fields.Integer(strict=True, load_default=default, validate=validate.Range(allowed.start, allowed.stop - 1))


# -- requests --------------------------------------------------------------------------------------------------
class OrganizationCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))


class InviteSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(1, 254))
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
    token = fields.String(required=True, validate=validate.Length(1, 200))


class AcceptInviteLinkSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(1, 200))


class RoleCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 64))
    description = fields.String(load_default="", validate=validate.Length(0, 500))
    permissionIds = fields.List(fields.String(), required=True, validate=validate.Length(0, 16))


class RoleUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(1, 64))
    description = fields.String(validate=validate.Length(0, 500))
    permissionIds = fields.List(fields.String(), validate=validate.Length(0, 16))


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_PAGE))
    cursor = fields.String(validate=validate.Length(1, 500))


class MembersQuerySchema(PageQuerySchema):
    role = fields.String(validate=validate.Length(1, 64), metadata={"description": "A role id or a role name"})
    q = fields.String(validate=validate.Length(1, 200), metadata={"description": "Search in e-mail and name"})


class InvitationsQuerySchema(PageQuerySchema):
    status = fields.String(load_default="pending", validate=validate.OneOf(INVITATION_STATUSES))


class AuditQuerySchema(PageQuerySchema):
    type = fields.String(validate=validate.Length(1, 64), metadata={"description": "An event type, e.g. RoleChanged"})
    actor = fields.String(validate=validate.Length(1, 254), metadata={"description": "A user id or e-mail"})
    since = fields.AwareDateTime(default_timezone=None)
    until = fields.AwareDateTime(default_timezone=None)


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
    emailStatus = fields.String(attribute="email_status", metadata={"enum": ["queued", "sent", "failed"]})
    lastSentAt = fields.DateTime(attribute="last_sent_at", allow_none=True)


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


class OrganizationSchema(Schema):
    id = fields.String()
    name = fields.String()
    createdAt = fields.DateTime(attribute="created_at")


class MembershipSchema(Schema):
    id = fields.String()
    name = fields.String()
    role = fields.Nested(RoleRefSchema)


class OrganizationListSchema(Schema):
    organizations = fields.List(fields.Nested(MembershipSchema))


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
    inviteLinks = fields.List(fields.Nested(InviteLinkSchema))
    total = fields.Integer()


class JoinedSchema(Schema):
    organizationId = fields.String()
    member = fields.Nested(MemberSchema)


class RoleListSchema(Schema):
    roles = fields.List(fields.Nested(RoleSchema))


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


class AuditLogSchema(Schema):
    events = fields.List(fields.Nested(AuditEventSchema))
    nextCursor = fields.String(allow_none=True)


class HealthSchema(Schema):
    status = fields.String()
    database = fields.String()
    position = fields.Integer()
    projections = fields.Dict()


class BulkRoleSchema(Schema):
    memberIds = fields.List(fields.UUID(), required=True, validate=validate.Length(1, 10_000))
    roleId = fields.UUID(required=True)


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
    jobs = fields.List(fields.Nested(JobSummarySchema))
