"""What an Organization command may be given: who acts, names, e-mail addresses, periods and limits.

Each check raises `InvalidValueError` naming the API's field, or returns the value as it
is stored (whitespace folded, e-mails normalised). The rules that need the organization's
state (a role name not taken, a member not already there) are its guards.
"""

from __future__ import annotations

from dataclasses import dataclass

from membership import addresses
from membership import exceptions as err
from membership.text import check_text

INVITATION_DAYS = range(1, 31)
INVITE_LINK_DAYS = range(1, 366)
MAX_LINK_USES = 1_000_000
DEFAULT_EXPIRES_IN_DAYS = 7
MAX_ROLE_NAME_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 500
MAX_ORGANIZATION_NAME_LENGTH = 200
MAX_PERSON_NAME_LENGTH = 200
MAX_USER_ID_LENGTH = 255


@dataclass(frozen=True)
class Actor:
    """The authenticated user a command is performed by (from the token)."""

    user_id: str
    email: str = ""
    name: str = ""
    email_verified: bool | None = None  # the identity provider's word, when it gives one


def check_actor(actor: Actor) -> None:
    """Who acts comes from a token: its id and e-mail are stored in every event, so they obey the text rule."""
    if not 1 <= len(actor.user_id) <= MAX_USER_ID_LENGTH:
        raise err.InvalidValueError(f"A user id must have 1 to {MAX_USER_ID_LENGTH} characters.", "sub")
    check_text(actor.user_id, "sub", "A user id")
    check_text(actor.email, "email", "An e-mail address")


def stamp(actor: Actor) -> dict[str, str]:
    """The actor fields every event carries."""
    check_actor(actor)
    return {"actor_id": actor.user_id, "actor_email": normalize_email(actor.email)}


def person_name(actor: Actor) -> str:
    """Names come from identity tokens: whitespace folded, length capped."""
    check_text(actor.name, "name", "A person's name")
    return " ".join(actor.name.split())[:MAX_PERSON_NAME_LENGTH]


def normalize_email(email: str) -> str:
    """Invitation e-mails are stored trimmed, lower-cased and composed (NFC), so they compare equal."""
    return addresses.normalize(email)


def validate_email(email: str) -> str:
    """`email` trimmed, lower-cased and in NFC form if it can be delivered (see membership.addresses)."""
    return addresses.validate_email(email)


def check_days(days: int, allowed: range, field: str = "expiresInDays") -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days not in allowed:
        raise err.InvalidValueError(
            f"{field} must be a whole number from {allowed.start} to {allowed.stop - 1}.", field=field
        )


def check_max_uses(max_uses: int) -> None:
    if isinstance(max_uses, bool) or not isinstance(max_uses, int) or not 0 <= max_uses <= MAX_LINK_USES:
        raise err.InvalidValueError(f"maxUses must be a whole number from 0 (unlimited) to {MAX_LINK_USES}.", "maxUses")


def check_organization_name(name: str) -> str:
    check_text(name, "name", "An organization name")
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_ORGANIZATION_NAME_LENGTH:
        raise err.InvalidValueError(
            f"An organization name must have 1 to {MAX_ORGANIZATION_NAME_LENGTH} characters.", "name"
        )
    return name


def check_role_text(name: str, description: str) -> tuple[str, str]:
    """A role's name (whitespace folded) and description (trimmed), as stored."""
    check_text(name, "name", "A role name")
    check_text(description, "description", "A description")
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_ROLE_NAME_LENGTH:
        raise err.InvalidValueError(f"A role name must have 1 to {MAX_ROLE_NAME_LENGTH} characters.", "name")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise err.InvalidValueError(f"A description has at most {MAX_DESCRIPTION_LENGTH} characters.", "description")
    return name, description.strip()
