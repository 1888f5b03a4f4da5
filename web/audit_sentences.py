"""The audit log in words: one sentence per event type, from what `projections.audit` keeps of each event
(the actor, a target label, and the event's own fields as `details`).

Sentences are `markupsafe.Markup` whose every value is escaped as it is put in. An event type without a
sentence here (a newer one), or a row whose details lack a field the sentence names, gets a generic one.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from markupsafe import Markup, escape

from membership import events
from projections.audit import AuditEntry

# event type -> (its name in the type filter, its sentence); {actor} and {target} besides the details' keys
SENTENCES: dict[str, tuple[str, str]] = {
    "Created": ("Organization created", "{actor} created the organization {name}"),
    "MemberJoined": ("Creator joined", "{email} joined as {role} on creating the organization"),
    "MemberInvited": ("Member invited", "{actor} invited {email} as {role}{again}"),
    "InvitationResent": ("Invitation resent", "{actor} sent the invitation to {target} again, with a new link"),
    "InvitationCancelled": ("Invitation cancelled", "{actor} cancelled the invitation to {email}"),
    "InviteAccepted": ("Invitation accepted", "{email} accepted the invitation and joined as {role}"),
    "InviteLinkCreated": ("Invite link created", "{actor} created an invite link for {role}, {uses}"),
    "InviteLinkDeleted": ("Invite link deleted", "{actor} deleted the {target}"),
    "MemberJoinedByLink": ("Joined by invite link", "{email} joined through an invite link as {role}"),
    "RoleChanged": ("Role changed", "{actor} changed {email}'s role from {oldRole} to {role}"),
    "MemberRemoved": ("Member removed", "{actor} removed {email} from the organization"),
    "MemberLeft": ("Member left", "{email} left the organization"),
    "OwnershipTransferred": ("Ownership transferred", "{actor} made {toEmail} the Owner and became {demotedToRole}"),
    "RoleCreated": ("Role created", "{actor} created the role {name}"),
    "RoleUpdated": ("Role updated", "{actor} updated the role {name}"),
    "RoleDeleted": ("Role deleted", "{actor} deleted the role {name}"),
    "InvitationEmailSent": ("Invitation e-mail sent", "{actor} sent the invitation e-mail to {email}"),
    "InvitationEmailFailed": (
        "Invitation e-mail failed",
        "{actor} could not deliver the invitation e-mail to {email}: {reason}",
    ),
    "OrganizationRenamed": ("Organization renamed", "{actor} renamed the organization from {oldName} to {name}"),
    "OrganizationDeleted": ("Organization deleted", "{actor} deleted the organization {name}"),
    "PersonErased": ("Person erased", "{actor} erased a person's personal data (pseudonym {pseudonym})"),
    "EventSkipped": (
        "Event skipped by an operator",
        "{actor} skipped event {position} ({eventType}) in the {projection} read model, because: {reason}",
    ),
}
GENERIC = "{kind} by {actor} ({target_type}: {target})"


@functools.cache
def event_types() -> tuple[tuple[str, str], ...]:
    """(type, name) of every Organization event: those with a sentence first, then any newer ones (once)."""
    declared = events.event_types()
    ordered = [*SENTENCES, *(name for name in declared if name not in SENTENCES)]
    return tuple((name, type_name(name)) for name in ordered)


def type_name(event_type: str) -> str:
    known = SENTENCES.get(event_type)
    return known[0] if known else _words(event_type)


def sentence(entry: AuditEntry) -> Markup:
    # Values are escaped as the sentence takes them, and put in with str.format_map: Markup.format_map escapes
    # too, but through string.Formatter in Python, a third of a page of fifty sentences' time.
    values = _Escaped(entry.details, **_derived(entry))
    known = SENTENCES.get(entry.event_type)
    if known is not None:
        try:
            return Markup(known[1].format_map(values))  # noqa: S704 (our sentences, escaped values)
        except (KeyError, IndexError, ValueError):  # a field this sentence names is missing from an older row
            pass
    return Markup(GENERIC.format_map(values))  # noqa: S704 (as above)


class _Escaped(dict[str, Any]):
    """A sentence's values, each escaped when the sentence takes it."""

    def __getitem__(self, key: str) -> Markup:
        return escape(super().__getitem__(key))


def actor_in_words(actor_id: str, actor_email: str) -> str:
    """Who did it: a person's e-mail, or the part of the service that acted."""
    if actor_email:
        return actor_email
    kind, _, name = actor_id.partition(":")
    if kind == "system" and name == "mailer":
        return "the mailer"
    if kind == "operator":
        return f"an operator ({name})" if name else "an operator"
    if kind == "system":
        return f"the service ({name})"
    return actor_id


def _derived(entry: AuditEntry) -> dict[str, Any]:
    details = entry.details
    uses = details.get("maxUses")
    return {
        "actor": actor_in_words(entry.actor_id, entry.actor_email),
        "target": entry.target_label,
        "target_type": entry.target_type.replace("_", " "),
        "kind": _words(entry.event_type),
        "again": " again, replacing an expired invitation" if details.get("replacesInvitationId") else "",
        "uses": "usable any number of times" if not uses else "usable once" if uses == 1 else f"usable {uses} times",
    }


@functools.cache
def _words(event_type: str) -> str:
    """InviteLinkCreated -> "Invite link created"."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", event_type) or [event_type]
    return " ".join([words[0], *(word.lower() for word in words[1:])])
