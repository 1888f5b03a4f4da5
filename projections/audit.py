"""Read model: the audit log, one row per event, readable without the write side.

Each row names the actor and a target with a label (an e-mail, a role name)
captured when the event happened, so it stays readable after the member or
role is gone. Details are the event's own fields, camelCased, minus the
nonces tokens are derived from: nothing in here unlocks an invitation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from membership.organization import Organization
from projections.engine.base import Projection, Writer
from projections.engine.reading import like_literal, read
from projections.engine.sql import ReadDatabase

LABEL_CACHE_SIZE = 100_000
STANDARD_FIELDS = {"originator_id", "originator_version", "timestamp", "actor_id", "actor_email", "originator_topic"}
NEVER_EXPORTED = {"token_nonce", "code_nonce"}

# event class -> (target type, field holding the target id or None for the organization, field holding a label)
TARGETS: dict[type, tuple[str, str | None, str | None]] = {
    Organization.Created: ("organization", None, "name"),
    Organization.MemberJoined: ("member", "member_id", "email"),
    Organization.MemberInvited: ("invitation", "invitation_id", "email"),
    Organization.InvitationResent: ("invitation", "invitation_id", None),
    Organization.InvitationCancelled: ("invitation", "invitation_id", "email"),
    Organization.InviteAccepted: ("member", "member_id", "email"),
    Organization.InviteLinkCreated: ("invite_link", "link_id", None),
    Organization.InviteLinkDeleted: ("invite_link", "link_id", None),
    Organization.MemberJoinedByLink: ("member", "member_id", "email"),
    Organization.RoleChanged: ("member", "member_id", "email"),
    Organization.MemberRemoved: ("member", "member_id", "email"),
    Organization.MemberLeft: ("member", "member_id", "email"),
    Organization.OwnershipTransferred: ("member", "to_member_id", "to_email"),
    Organization.RoleCreated: ("role", "role_id", "name"),
    Organization.RoleUpdated: ("role", "role_id", "name"),
    Organization.RoleDeleted: ("role", "role_id", "name"),
    Organization.InvitationEmailSent: ("invitation", "invitation_id", "email"),
    Organization.InvitationEmailFailed: ("invitation", "invitation_id", "email"),
    Organization.OrganizationRenamed: ("organization", None, "name"),
    Organization.OrganizationDeleted: ("organization", None, "name"),
    Organization.PersonErased: ("person", "pseudonym", None),
}

AUDIT_COLUMNS = (
    "position", "organization_id", "event_type", "occurred_at", "actor_id", "actor_email",
    "target_type", "target_id", "target_label", "details", "role_ids",
)  # fmt: skip
# Joins name who granted the access: the inviter of the invitation accepted, the creator of the link used.
GRANTED_BY = {Organization.InviteAccepted: "invitation_id", Organization.MemberJoinedByLink: "link_id"}
_UPSERT_LABEL = (
    "INSERT INTO {audit_labels} (item_id, organization_id, label) VALUES (%s, %s, %s)"
    " ON CONFLICT (item_id) DO UPDATE SET label = excluded.label"
)
# PostgreSQL: a batch's labels in one statement (arrays of item ids, organization ids, labels)
_UPSERT_LABELS = (
    "INSERT INTO {audit_labels} (item_id, organization_id, label)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
    " ON CONFLICT (item_id) DO UPDATE SET label = excluded.label"
)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def plain(value: Any) -> Any:
    kind = type(value)
    if kind is UUID:
        return str(value)
    if kind is datetime:
        return value.isoformat()
    return value


@dataclass(frozen=True)
class DetailsPlan:
    """How to turn one shape of event (its class and fields) into `details`, worked out once.

    Keys come out sorted, so the JSON equals `json.dumps(..., sort_keys=True)` without sorting each time.
    """

    fields: tuple[tuple[str, str], ...]  # (event field, camelCase key), in key order
    role_labels: frozenset[str]  # camelCase keys that hold a role's label, taken from the field before the suffix

    @classmethod
    def for_fields(cls, names: Iterable[str]) -> DetailsPlan:
        fields = {camel(name): name for name in names if name not in STANDARD_FIELDS and name not in NEVER_EXPORTED}
        labels = {camel(name.removesuffix("_id")): name for name in fields.values() if name.endswith("role_id")}
        keys = sorted({**fields, **labels})
        return cls(tuple((labels.get(key) or fields[key], key) for key in keys), frozenset(labels))


_encode_json = json.JSONEncoder().encode  # made once: json.dumps(sort_keys=True) builds an encoder per call


class AuditProjection(Projection):
    name = "audit"
    ignores_unregistered_events = False
    tables = {
        "audit_log": (
            "position {bigint} PRIMARY KEY, organization_id TEXT NOT NULL, event_type TEXT NOT NULL, "
            "occurred_at {ts} NOT NULL, actor_id TEXT NOT NULL, actor_email TEXT NOT NULL, target_type TEXT NOT NULL, "
            "target_id TEXT NOT NULL, target_label TEXT NOT NULL, details {json} NOT NULL, "
            "role_ids TEXT NOT NULL"  # every role the event names, space-separated (the role filter)
        ),
        # Labels of invitations, links and roles, for events that carry only an id.
        "audit_labels": "item_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, label TEXT NOT NULL",
    }
    indexes = [
        ("by_org", "audit_log", "organization_id, position"),
        ("by_org_time", "audit_log", "organization_id, occurred_at"),
        ("by_org_target", "audit_log", "organization_id, target_id, position"),
        ("by_org_label", "audit_log", "organization_id, target_label, position"),
    ]

    def __init__(self, generation: int) -> None:
        super().__init__(generation)
        self._labels: dict[str, str] = {}
        self._plans: dict[tuple[Any, ...], DetailsPlan] = {}
        # Written once per batch by flush(): far fewer round trips than a statement per event.
        self._rows: list[tuple[Any, ...]] = []
        self._new_labels: dict[str, tuple[str, str, str]] = {}

    def forget_uncommitted(self) -> None:
        """Called when a batch rolls back: the buffers and the label cache may hold its effects."""
        self._labels.clear()
        self._rows.clear()
        self._new_labels.clear()

    def flush(self, w: Writer) -> None:
        rows, labels = self._rows, list(self._new_labels.values())
        self._rows, self._new_labels = [], {}
        if rows:
            w.copy("audit_log", AUDIT_COLUMNS, rows)
        if labels and w.db.is_sqlite:
            w.run_many(_UPSERT_LABEL, labels)
        elif labels:
            w.run(_UPSERT_LABELS, *(list(column) for column in zip(*labels, strict=True)))

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        """Every organization event is audited (a bulk job's own effects are member events too)."""
        if isinstance(event, Organization.Event):
            self._record(event, w)

    @apply.register(Organization.Created)
    def _created(self, e: Organization.Created, w: Writer) -> None:
        for role in e.roles:
            self._remember(w, role["id"], str(e.originator_id), role["name"])
        self._record(e, w)

    @apply.register(Organization.MemberInvited)
    def _invited(self, e: Organization.MemberInvited, w: Writer) -> None:
        self._remember(w, str(e.invitation_id), str(e.originator_id), e.email)
        self._remember_grantor(w, str(e.invitation_id), e)
        self._record(e, w)

    @apply.register(Organization.InviteAccepted)
    @apply.register(Organization.MemberJoinedByLink)
    def _joined(self, e: Any, w: Writer) -> None:
        granted_by = self._label(w, f"{getattr(e, GRANTED_BY[type(e)])}:by")
        self._record(e, w, {"grantedBy": json.loads(granted_by) if granted_by.startswith("{") else None})

    @apply.register(Organization.InviteLinkCreated)
    def _link_created(self, e: Organization.InviteLinkCreated, w: Writer) -> None:
        role = self._label(w, str(e.role_id))
        self._remember(w, str(e.link_id), str(e.originator_id), f"invite link for {role}")
        self._remember_grantor(w, str(e.link_id), e)
        self._record(e, w)

    @apply.register(Organization.RoleCreated)
    @apply.register(Organization.RoleUpdated)
    def _role_named(self, e: Any, w: Writer) -> None:
        self._remember(w, str(e.role_id), str(e.originator_id), e.name)
        self._record(e, w)

    def _remember_grantor(self, w: Writer, item_id: str, e: Any) -> None:
        grantor = {"email": e.actor_email, "userId": e.actor_id}
        self._remember(w, f"{item_id}:by", str(e.originator_id), _encode_json(grantor))

    def _record(self, e: Any, w: Writer, extra: dict[str, Any] | None = None) -> None:
        target_type, id_field, label_field = TARGETS.get(type(e), ("organization", None, None))
        target_id = str(getattr(e, id_field)) if id_field else str(e.originator_id)
        label = getattr(e, label_field) if label_field else self._label(w, target_id)
        self._rows.append(
            (
                w.position,
                str(e.originator_id),
                type(e).__name__,
                w.time(e.timestamp),
                e.actor_id,
                e.actor_email,
                target_type,
                target_id,
                label,
                self._details(e, w, extra),
                " ".join(str(value) for name, value in vars(e).items() if name.endswith("role_id") and value),
            )
        )

    def _details(self, e: Any, w: Writer, extra: dict[str, Any] | None = None) -> str:
        values = vars(e)
        shape = (type(e), *values)
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plans[shape] = DetailsPlan.for_fields(values)
        details: dict[str, Any] = {}
        for field, key in plan.fields:
            value = values[field]
            if key in plan.role_labels:
                if value is not None:
                    details[key] = self._label(w, str(value))
            else:
                details[key] = plain(value)
        if extra:
            details = dict(sorted({**details, **extra}.items()))
        return _encode_json(details)

    def _remember(self, w: Writer, item_id: str, organization_id: str, label: str) -> None:
        self._new_labels[item_id] = (item_id, organization_id, label)  # the last label of the batch wins
        self._cache(item_id, label)

    def _label(self, w: Writer, item_id: str) -> str:
        pending = self._new_labels.get(item_id)
        if pending is not None:
            return pending[2]
        label = self._labels.get(item_id)
        if label is None:
            w.cursor.execute(w.db.sql(f"SELECT label FROM {w.tables['audit_labels']} WHERE item_id = %s"), (item_id,))
            row = w.cursor.fetchone()
            label = row[0] if row else item_id
            self._cache(item_id, label)
        return label

    def _cache(self, item_id: str, label: str) -> None:
        if len(self._labels) >= LABEL_CACHE_SIZE:
            self._labels.clear()  # crude but bounded; misses fall back to the table
        self._labels[item_id] = label


# -- reads -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditEntry:
    position: int
    organization_id: str
    event_type: str
    occurred_at: datetime
    actor_id: str
    actor_email: str
    target_type: str
    target_id: str
    target_label: str
    details: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "organizationId": self.organization_id,
            "type": self.event_type,
            "occurredAt": self.occurred_at.isoformat(),
            "actor": {"userId": self.actor_id, "email": self.actor_email},
            "target": {"type": self.target_type, "id": self.target_id, "label": self.target_label},
            "details": self.details,
        }


def audit_page(
    db: ReadDatabase,
    organization_id: UUID,
    after: int = 0,
    limit: int = 1000,
    newest_first: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    event_type: str | None = None,
    actor: str | None = None,
    member_id: str | None = None,
    email: str | None = None,
    role_id: str | None = None,
) -> list[AuditEntry]:
    """Audit entries after position `after` (oldest first), or before it when `newest_first`; filtered by
    the event's type, its actor (id or e-mail), the member it is about (`member_id`), the e-mail it is about
    (a member's or an invitation's) and a role it names."""
    where: list[str] = ["organization_id = %s"]
    params: list[Any] = [str(organization_id)]
    if newest_first and after:
        where.append("position < %s")
        params.append(after)
    elif not newest_first:
        where.append("position > %s")
        params.append(after)
    if since is not None:
        where.append("occurred_at >= %s")
        params.append(db.to_db_time(since))
    if until is not None:
        where.append("occurred_at < %s")
        params.append(db.to_db_time(until))
    if event_type:
        where.append("event_type = %s")
        params.append(event_type)
    if actor:
        where.append("(actor_id = %s OR actor_email = %s)")
        params.extend([actor, actor.lower()])
    if member_id:
        where.append("target_type = 'member' AND target_id = %s")
        params.append(member_id)
    if email:
        where.append("target_type IN ('member', 'invitation') AND target_label = %s")
        params.append(email.lower())
    if role_id:
        where.append("(' ' || role_ids || ' ') LIKE %s")
        params.append(f"% {like_literal(role_id)} %")
    with read(db) as tables:
        rows = tables.fetch(
            "SELECT position, organization_id, event_type, occurred_at, actor_id, actor_email, target_type,"
            f" target_id, target_label, details FROM {{audit_log}} WHERE {' AND '.join(where)}"
            f" ORDER BY position {'DESC' if newest_first else ''} LIMIT %s",
            *params,
            limit,
        )
    return [
        AuditEntry(int(r[0]), r[1], r[2], db.when(r[3]), r[4], r[5], r[6], r[7], r[8], json.loads(r[9])) for r in rows
    ]


def iter_audit(db: ReadDatabase, organization_id: UUID, page_size: int = 1000, **filters: Any) -> Iterator[AuditEntry]:
    """Every matching entry, fetched a page at a time (constant memory, for exports)."""
    after = 0
    while page := audit_page(db, organization_id, after=after, limit=page_size, **filters):
        yield from page
        after = page[-1].position
