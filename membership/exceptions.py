"""Every refusal the domain can give, grouped by the kind of failure.

Adapters map the five base classes to a status once (404, 403, 409, 410, 422);
each concrete class carries a stable machine-readable `code`.
"""

from __future__ import annotations


class MembershipError(Exception):
    """Base class: a command was refused. `code` is stable, the message is for people."""

    code = "membership_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(MembershipError):
    code = "not_found"


class PermissionDeniedError(MembershipError):
    code = "permission_denied"


class ConflictError(MembershipError):
    code = "conflict"


class GoneError(MembershipError):
    """The invitation or link existed but can no longer be used."""

    code = "gone"


class InvalidValueError(MembershipError):
    """A value breaks a domain rule (bad e-mail, days out of range...)."""

    code = "invalid_value"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


# -- not found ---------------------------------------------------------------
class OrganizationNotFoundError(NotFoundError):
    code = "organization_not_found"


class MemberNotFoundError(NotFoundError):
    code = "member_not_found"


class InvitationNotFoundError(NotFoundError):
    code = "invitation_not_found"


class InviteLinkNotFoundError(NotFoundError):
    code = "invite_link_not_found"


class RoleNotFoundError(NotFoundError):
    code = "role_not_found"


# -- permission denied -------------------------------------------------------
class NotAMemberError(PermissionDeniedError):
    code = "not_a_member"


class MissingPermissionError(PermissionDeniedError):
    code = "missing_permission"

    def __init__(self, permission: str) -> None:
        super().__init__(f"This action requires the {permission} permission.")
        self.permission = permission


class PrivilegeEscalationError(PermissionDeniedError):
    code = "privilege_escalation"


class OwnerOnlyError(PermissionDeniedError):
    code = "owner_only"


class OwnerRoleNotAssignableError(PermissionDeniedError):
    code = "owner_role_not_assignable"


class InvitationEmailMismatchError(PermissionDeniedError):
    code = "invitation_email_mismatch"


# -- conflicts ---------------------------------------------------------------
class AlreadyMemberError(ConflictError):
    code = "already_member"


class AlreadyInvitedError(ConflictError):
    code = "already_invited"


class InvitationNotPendingError(ConflictError):
    code = "invitation_not_pending"


class TooManyPendingInvitationsError(ConflictError):
    code = "too_many_pending_invitations"


class OwnerCannotBeRemovedError(ConflictError):
    code = "owner_cannot_be_removed"


class OwnerRoleCannotChangeError(ConflictError):
    code = "owner_role_cannot_change"


class CannotRemoveYourselfError(ConflictError):
    code = "cannot_remove_yourself"


class PersonNotFoundError(NotFoundError):
    """No personal data belongs to that address or user id (never stored, or already erased)."""

    code = "person_not_found"


class ErasureInProgressError(ConflictError):
    code = "erasure_in_progress"


class OwnerCannotBeErasedError(ConflictError):
    code = "owner_cannot_be_erased"


class OwnerCannotLeaveError(ConflictError):
    code = "owner_cannot_leave"


class AlreadyOwnerError(ConflictError):
    code = "already_owner"


class SystemRoleImmutableError(ConflictError):
    code = "system_role_immutable"


class RoleNameTakenError(ConflictError):
    code = "role_name_taken"


class RoleInUseError(ConflictError):
    code = "role_in_use"


# -- gone --------------------------------------------------------------------
class InvitationExpiredError(GoneError):
    code = "invitation_expired"


class InvitationCancelledError(GoneError):
    code = "invitation_cancelled"


class InvitationAlreadyAcceptedError(GoneError):
    code = "invitation_already_accepted"


class InviteLinkExpiredError(GoneError):
    code = "invite_link_expired"


class InviteLinkDeletedError(GoneError):
    code = "invite_link_deleted"


class InviteLinkUsedUpError(GoneError):
    code = "invite_link_used_up"


class InviteLinkAlreadyUsedError(GoneError):
    code = "invite_link_already_used"


class OrganizationDeletedError(GoneError):
    """Its Owner deleted the organization: its invitations and links no longer lead anywhere."""

    code = "organization_deleted"


class InvitationReplacedError(GoneError):
    """A real token that a resend replaced (only a token signed with our key can tell this)."""

    code = "invitation_replaced"


class EmailNotVerifiedError(PermissionDeniedError):
    """The identity provider says the caller's e-mail address is not verified."""

    code = "email_not_verified"


class InvalidInvitationTokenError(InvitationNotFoundError):
    """Forged or mistyped: we never say which."""

    code = "invalid_invitation_token"


class InvalidInviteLinkCodeError(InviteLinkNotFoundError):
    code = "invalid_invite_link_code"
