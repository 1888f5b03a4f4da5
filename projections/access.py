"""Read model: access over time. For auditors: who held which role when, who granted it and how, what each
role allowed at each moment, and each invitation as it was.

Every row is a *version* valid over a span of the organization's stream: from the position of the event that
made it to that of the event that ended it (open while none has). "As of T" is a position: that of the last
event recorded at or before T (`timeline`). Clocks of the processes that record events may disagree, so a
stream's timestamps can step back; the moment of an event is then the earliest timestamp at or after it
in its stream (an event recorded later cannot have happened earlier), kept in `timeline`, so that "as of T"
is always a prefix of the stream, exactly what `membership audit replay --at T` replays.

Versions are written a batch at a time (`BatchRows`): the open versions a batch's events change are read
before it in one query per table, and its new rows are copied in at its end. Between batches of one runner
the projection remembers each organization's last moment and member count and each invitation's or link's
grantor, and forgets them when another runner's batch came between (`begin`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from membership.organization import Organization, system_role_id
from membership.permissions import OWNER
from projections.engine.base import Projection, Writer
from projections.engine.reading import Key, Page, cursor_after, like_literal, order_by, ordered_page, read
from projections.engine.sql import ReadDatabase
from projections.exports import spreadsheet_cell
from projections.invitations import InvitationRecord, status_filter
from projections.members import ActorRef, MemberRecord
from projections.roles import ROLE_COLUMNS, ROLE_KEYS, RoleRecord, encode_permissions, role_record

# How a member came to hold a role, and how they stopped holding it.
CREATED, INVITATION, INVITE_LINK, ROLE_CHANGE, OWNERSHIP_TRANSFER = (
    "created", "invitation", "invite_link", "role_change", "ownership_transfer"
)  # fmt: skip
REMOVED, LEFT, ORGANIZATION_DELETED, ERASED = "removed", "left", "organization_deleted", "erased"
MEMBERS_DELTA = {
    Organization.MemberJoined: 1, Organization.InviteAccepted: 1, Organization.MemberJoinedByLink: 1,
    Organization.MemberRemoved: -1, Organization.MemberLeft: -1,
}  # fmt: skip
FEW = 5000  # active intervals few enough to find by their spans and sort, rather than walk in order
_SPAN = (
    "from_position {bigint} NOT NULL, from_at {ts} NOT NULL, to_position {bigint}, to_at {ts}, lane {bigint} NOT NULL"
)
# Each organization's versions lie in a lane of positions of its own, so that a GiST index over the spans
# (`lane + from_position` to `lane + to_position`) tells PostgreSQL's planner, from the spans alone, how few
# versions contain a position of one organization: with positions shared by every tenant, it counted those
# of a 100,000-member organization too, scanned the table, and took 100 ms where the index takes 1.
LANE_BITS = 40  # positions (the event log's notification ids) stay below 2**40, a trillion events
LANE_END = 2**LANE_BITS  # stands for the end of a version still open
_INTERVAL_COLUMNS = (
    "interval_id", "organization_id", "member_id", "user_id", "email", "name", "role_id", "joined_at",
    "from_position", "from_at", "to_position", "to_at", "granted_how", "granted_by_id", "granted_by_email",
    "granted_via", "ended_how", "ended_by_id", "ended_by_email", "lane",
)  # fmt: skip
_ROLE_COLUMNS = (
    "version_id", "organization_id", "role_id", "name", "description", "is_system", "permissions", "created_at",
    "changed_by_id", "changed_by_email", "from_position", "from_at", "to_position", "to_at", "lane",
)  # fmt: skip
_INVITATION_COLUMNS = (
    "version_id", "organization_id", "invitation_id", "email", "role_id", "status", "invited_by_id",
    "invited_by_email", "created_at", "expires_at", "resent_at", "resend_count", "closed_at", "email_status",
    "last_sent_at", "from_position", "from_at", "to_position", "to_at", "lane",
)  # fmt: skip


def span(alias: str = "") -> str:
    """SQL: a version's span in its organization's lane (the expression the spans' GiST indexes)."""
    a = f"{alias}." if alias else ""
    return f"int8range({a}lane + {a}from_position, {a}lane + COALESCE({a}to_position, {LANE_END}))"


def lane(organization_id: Any) -> int:
    """Where the organization's versions lie among the spans (see LANE_BITS)."""
    return int(str(organization_id).replace("-", "")[:5], 16) << LANE_BITS


class BatchRows:
    """The versions of one table a batch touches, kept until its end and then written at once: the rows it
    made (copied in), and the open versions of earlier batches it changes (read before the batch, all in one
    query; closed by one statement per batch at the end). Each key's open version is in here for the batch."""

    def __init__(self, table: str, columns: Sequence[str], key: str, version: str, ended: Sequence[str]) -> None:
        self.table, self.columns, self.key, self.version, self.ended = table, columns, key, version, tuple(ended)
        self.rows: list[dict[str, Any]] = []  # made by this batch
        self.open: dict[str, dict[str, Any]] = {}  # key -> its open version (made by this batch, or stored)
        self.closings: list[tuple[Any, ...]] = []  # stored versions closed: (to_position, to_at, *ended, version)

    def load(self, w: Writer, keys: Iterable[str]) -> None:
        """Read the open versions of `keys` that earlier batches stored (before the batch is applied)."""
        missing = sorted({key for key in keys if key not in self.open})
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            w.run(f"SELECT {', '.join(self.columns)} FROM {{{self.table}}} WHERE {self.key} IN"
                  f" ({', '.join(['%s'] * len(chunk))}) AND to_position IS NULL", *chunk)  # fmt: skip
            for stored in w.cursor.fetchall():
                row = dict(zip(self.columns, stored, strict=True))
                row["stored"] = True
                self.open[row[self.key]] = row

    def add(self, row: dict[str, Any]) -> None:
        row["stored"] = False
        self.rows.append(row)
        self.open[row[self.key]] = row

    def close(self, key: str, position: int, at: Any, **ended: Any) -> bool:
        """Close the open version of `key` if it is here; False if it is not (not read, or none)."""
        row = self.open.pop(key, None)
        if row is None:
            return False
        if row["stored"]:
            self.closings.append((position, at, *(ended.get(column) for column in self.ended), row[self.version]))
        else:
            row.update(to_position=position, to_at=at, **ended)
        return True

    def new_version(self, key: str, version_id: str, position: int, at: Any, **changes: Any) -> bool:
        """The open version of `key` closes and a copy with `changes` (values, or functions of the old row)
        opens, if it is here; else False."""
        old = self.open.get(key)
        if old is None:
            return False
        self.close(key, position, at)
        values = {name: value(old) if callable(value) else value for name, value in changes.items()}
        self.add({**old, **values, self.version: version_id, "from_position": position, "from_at": at,
                  "to_position": None, "to_at": None})  # fmt: skip
        return True

    def flush(self, w: Writer) -> None:
        rows, closings = self.rows, self.closings
        self.clear()
        if closings:
            ended = "".join(f", {column} = %s" for column in self.ended)
            w.run_many(f"UPDATE {{{self.table}}} SET to_position = %s, to_at = %s{ended} WHERE {self.version} = %s",
                       closings)  # fmt: skip
        if rows:
            w.copy(self.table, self.columns, [[row[column] for column in self.columns] for row in rows])

    def clear(self) -> None:
        self.rows, self.open, self.closings = [], {}, []


# Events that change versions of earlier batches: the keys they name (read before the batch is applied)
_MEMBER_KEYS_OF: dict[type, tuple[str, ...]] = {
    Organization.RoleChanged: ("member_id",), Organization.MemberRemoved: ("member_id",),
    Organization.MemberLeft: ("member_id",), Organization.OwnershipTransferred: ("from_member_id", "to_member_id"),
    Organization.PersonErased: ("member_id",),
}  # fmt: skip
_INVITATION_KEYS_OF: dict[type, tuple[str, ...]] = {
    Organization.InviteAccepted: ("invitation_id",), Organization.InvitationCancelled: ("invitation_id",),
    Organization.InvitationResent: ("invitation_id",), Organization.InvitationEmailSent: ("invitation_id",),
    Organization.InvitationEmailFailed: ("invitation_id",), Organization.MemberInvited: ("replaces_invitation_id",),
    Organization.MemberJoinedByLink: ("cancelled_invitation_id",),
    Organization.PersonErased: ("cancelled_invitation_ids",),  # a list
}  # fmt: skip


class AccessProjection(Projection):
    name = "access"
    ignores_unregistered_events = False  # every event of an organization is a moment of its timeline
    tables = {
        # every event: its moment (see the module's docstring), and how many members there were after it
        "access_timeline": "organization_id TEXT NOT NULL, position {bigint} NOT NULL, at {ts} NOT NULL, "
        "members INTEGER NOT NULL, PRIMARY KEY (organization_id, position)",
        "access_intervals": (
            "interval_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, member_id TEXT NOT NULL, "
            "user_id TEXT NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL, role_id TEXT NOT NULL, "
            f"joined_at {{ts}} NOT NULL, {_SPAN}, granted_how TEXT NOT NULL, granted_by_id TEXT NOT NULL, "
            "granted_by_email TEXT NOT NULL, granted_via TEXT, ended_how TEXT, ended_by_id TEXT, ended_by_email TEXT"
        ),
        "access_roles": (
            "version_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, role_id TEXT NOT NULL, name TEXT NOT NULL, "
            "description TEXT NOT NULL, is_system INTEGER NOT NULL, permissions TEXT NOT NULL, "
            f"created_at {{ts}} NOT NULL, changed_by_id TEXT NOT NULL, changed_by_email TEXT NOT NULL, {_SPAN}"
        ),
        "access_invitations": (
            "version_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, invitation_id TEXT NOT NULL, "
            "email TEXT NOT NULL, role_id TEXT NOT NULL, status TEXT NOT NULL, invited_by_id TEXT NOT NULL, "
            "invited_by_email TEXT NOT NULL, created_at {ts} NOT NULL, expires_at {ts} NOT NULL, resent_at {ts}, "
            f"resend_count INTEGER NOT NULL, closed_at {{ts}}, email_status TEXT NOT NULL, last_sent_at {{ts}}, {_SPAN}"
        ),
        "access_links": "link_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, created_by_id TEXT NOT NULL, "
        "created_by_email TEXT NOT NULL",
    }
    postgres_indexes = [
        ("spans", table, "", f"gist ({span()})") for table in ("access_intervals", "access_roles", "access_invitations")
    ]
    write_indexes = frozenset({"by_org_at", "open_by_member", "open_by_role", "open_by_invitation"})
    indexes = [
        ("by_org_at", "access_timeline", "organization_id, at, position"),
        ("by_member", "access_intervals", "member_id, from_position"),
        ("open_by_member", "access_intervals", "member_id WHERE to_position IS NULL"),
        ("by_org_joined", "access_intervals", "organization_id, joined_at, member_id"),
        ("by_org_role", "access_intervals", "organization_id, role_id, from_position"),
        ("by_role", "access_roles", "role_id, from_position"),
        ("open_by_role", "access_roles", "role_id WHERE to_position IS NULL"),
        ("by_org", "access_roles", "organization_id, from_position"),
        ("by_invitation", "access_invitations", "invitation_id, from_position"),
        ("open_by_invitation", "access_invitations", "invitation_id WHERE to_position IS NULL"),
        ("by_org_created", "access_invitations", "organization_id, created_at, invitation_id"),
    ]

    def __init__(self, generation: int) -> None:
        super().__init__(generation)
        # What earlier events said, so that most statements need no sub-query (see begin):
        self._latest: dict[str, datetime] = {}  # organization -> its latest event's timestamp
        self._members: dict[str, int] = {}  # organization -> how many members it had after that event
        self._grantors: dict[str, tuple[str, str]] = {}  # invitation or link -> its inviter's or creator's id, e-mail
        self._applied_to = -1
        self._intervals = BatchRows("access_intervals", _INTERVAL_COLUMNS, "member_id", "interval_id",
                                    ("ended_how", "ended_by_id", "ended_by_email"))  # fmt: skip
        self._invitations = BatchRows("access_invitations", _INVITATION_COLUMNS, "invitation_id", "version_id", ())
        self._timeline: list[dict[str, Any]] = []  # this batch's moments, copied in at its end

    def prepare(self, w: Writer, events: Sequence[Any]) -> None:
        """Read the open versions the batch's events change, in one query per table."""
        for rows, keys_of in ((self._intervals, _MEMBER_KEYS_OF), (self._invitations, _INVITATION_KEYS_OF)):
            keys = [
                str(key)
                for e in events
                for name in keys_of.get(type(e), ())
                if (value := getattr(e, name))
                for key in (value if isinstance(value, list) else [value])
            ]
            if keys:
                rows.load(w, keys)

    def flush(self, w: Writer) -> None:
        super().flush(w)
        self._intervals.flush(w)
        self._invitations.flush(w)
        moments, self._timeline = self._timeline, []
        if moments:
            columns = ("organization_id", "position", "at", "members")
            w.copy("access_timeline", columns, [[row[column] for column in columns] for row in moments])

    def begin(self, after: int) -> None:
        if after != self._applied_to:
            self._forget()

    def ended(self, position: int) -> None:
        self._applied_to = position

    def forget_uncommitted(self) -> None:
        super().forget_uncommitted()
        self._forget()
        self._intervals.clear()
        self._invitations.clear()
        self._timeline = []

    def _forget(self) -> None:
        self._latest.clear()
        self._members.clear()
        self._grantors.clear()
        self._applied_to = -1

    @singledispatchmethod
    def apply(self, event: Any, w: Writer) -> None:
        if isinstance(event, Organization.Event):
            self._moment(event, w)

    def _moment(self, e: Any, w: Writer) -> None:
        """The event's place in its organization's timeline, with the count of members after it; an earlier
        timestamp than one before it moves those back to it (see the module's docstring)."""
        org, at = str(e.originator_id), e.timestamp
        if org not in self._members:  # the organization's last moment, read once (then remembered)
            w.run("SELECT at, members FROM {access_timeline} WHERE organization_id = %s ORDER BY position DESC"
                  " LIMIT 1", org)  # fmt: skip
            row = w.cursor.fetchone()
            self._members[org] = 0 if row is None else int(row[1])
            if row is not None:
                self._latest[org] = w.db.when(row[0])
        latest = self._latest.get(org)
        if latest is not None and at < latest:
            w.run("UPDATE {access_timeline} SET at = %s WHERE organization_id = %s AND at > %s", w.time(at), org,
                  w.time(at))  # fmt: skip
            for row in self._timeline:  # and those of this batch
                if row["organization_id"] == org and row["moment"] > at:
                    row["moment"], row["at"] = at, w.time(at)
        self._latest[org] = at if latest is None else max(latest, at)
        emptied = isinstance(e, Organization.OrganizationDeleted | Organization.Created)
        delta = MEMBERS_DELTA.get(type(e), 0)
        if isinstance(e, Organization.PersonErased) and e.member_id is not None:
            delta = -1
        members = self._members[org] = 0 if emptied else self._members[org] + delta
        self._timeline.append({"organization_id": org, "position": w.position, "at": w.time(at), "moment": at,
                               "members": members})  # fmt: skip

    # -- roles -------------------------------------------------------------------------------------------------
    @apply.register(Organization.Created)
    def _created(self, e: Organization.Created, w: Writer) -> None:
        self._moment(e, w)
        for role in e.roles:
            self._role_version(w, e, role["id"], role["name"], role["description"], True, role["permissions"])

    @apply.register(Organization.RoleCreated)
    def _role_created(self, e: Organization.RoleCreated, w: Writer) -> None:
        self._moment(e, w)
        self._role_version(w, e, str(e.role_id), e.name, e.description, False, e.permissions)

    @apply.register(Organization.RoleUpdated)
    def _role_updated(self, e: Organization.RoleUpdated, w: Writer) -> None:
        self._moment(e, w)
        self._new_versions(w, e, "access_roles", _ROLE_COLUMNS, "role_id", "role_id = %s", (str(e.role_id),),
                           name=e.name, description=e.description, permissions=encode_permissions(e.permissions),
                           changed_by_id=e.actor_id, changed_by_email=e.actor_email)  # fmt: skip

    @apply.register(Organization.RoleDeleted)
    def _role_deleted(self, e: Organization.RoleDeleted, w: Writer) -> None:
        self._moment(e, w)
        self._close(w, e, "access_roles", "role_id", str(e.role_id))

    def _role_version(
        self, w: Writer, e: Any, role_id: str, name: str, description: str, system: bool, permissions: list[str]
    ) -> None:
        at = w.time(e.timestamp)
        self._insert(w, "access_roles", _ROLE_COLUMNS, (
            f"{role_id}@{w.position}", str(e.originator_id), role_id, name, description, int(system),
            encode_permissions(permissions), at, e.actor_id, e.actor_email, w.position, at, None, None,
            lane(e.originator_id),
        ))  # fmt: skip

    # -- members -----------------------------------------------------------------------------------------------
    @apply.register(Organization.MemberJoined)
    def _joined(self, e: Organization.MemberJoined, w: Writer) -> None:
        self._moment(e, w)
        self._grant(w, e, str(e.role_id), CREATED, None, ("%s", "%s"), e.actor_id, e.actor_email)

    @apply.register(Organization.InviteAccepted)
    def _accepted(self, e: Organization.InviteAccepted, w: Writer) -> None:
        self._moment(e, w)
        invitation = str(e.invitation_id)
        self._invitation_version(w, e, invitation,
                          status="accepted", closed_at=w.time(e.timestamp))  # fmt: skip
        inviter = "(SELECT {0} FROM {{access_invitations}} WHERE invitation_id = %s AND to_position IS NULL)"
        self._grant_by(
            w, e, INVITATION, invitation, inviter.format("invited_by_id"), inviter.format("invited_by_email")
        )

    @apply.register(Organization.MemberJoinedByLink)
    def _joined_by_link(self, e: Organization.MemberJoinedByLink, w: Writer) -> None:
        self._moment(e, w)
        if e.cancelled_invitation_id is not None:
            self._invitation_closed(w, e, str(e.cancelled_invitation_id), "cancelled")
        link = str(e.link_id)
        creator = "(SELECT {0} FROM {{access_links}} WHERE link_id = %s)"
        self._grant_by(w, e, INVITE_LINK, link, creator.format("created_by_id"), creator.format("created_by_email"))

    def _grant_by(self, w: Writer, e: Any, how: str, via: str, by_id: str, by_email: str) -> None:
        """A join granted by the invitation's inviter or the link's creator: as remembered, or else read by the
        sub-queries `by_id` and `by_email`."""
        known = self._grantors.get(via)
        if known is not None:
            self._grant(w, e, str(e.role_id), how, via, ("%s", "%s"), *known)
        else:
            self._grant(w, e, str(e.role_id), how, via, (by_id, by_email), via, via)

    @apply.register(Organization.RoleChanged)
    def _role_changed(self, e: Organization.RoleChanged, w: Writer) -> None:
        self._moment(e, w)
        self._regrant(w, e, str(e.member_id), str(e.role_id), ROLE_CHANGE)

    @apply.register(Organization.OwnershipTransferred)
    def _transferred(self, e: Organization.OwnershipTransferred, w: Writer) -> None:
        self._moment(e, w)
        self._regrant(w, e, str(e.from_member_id), str(e.demoted_to_role_id), OWNERSHIP_TRANSFER)
        self._regrant(w, e, str(e.to_member_id), str(system_role_id(e.originator_id, OWNER.key)), OWNERSHIP_TRANSFER)

    @apply.register(Organization.MemberRemoved)
    def _removed(self, e: Organization.MemberRemoved, w: Writer) -> None:
        self._moment(e, w)
        self._end(w, e, str(e.member_id), REMOVED)

    @apply.register(Organization.MemberLeft)
    def _left(self, e: Organization.MemberLeft, w: Writer) -> None:
        self._moment(e, w)
        self._end(w, e, str(e.member_id), LEFT)

    @apply.register(Organization.PersonErased)
    def _erased(self, e: Organization.PersonErased, w: Writer) -> None:
        self._moment(e, w)
        if e.member_id is not None:
            self._end(w, e, str(e.member_id), ERASED)
        for invitation_id in e.cancelled_invitation_ids:
            self._invitation_closed(w, e, str(invitation_id), "cancelled")

    def _grant(
        self, w: Writer, e: Any, role_id: str, how: str, via: str | None, by_sql: tuple[str, str], *by: Any
    ) -> None:
        """A new member's first interval; `by_sql` is the grantor's id and e-mail as SQL (parameters, or
        sub-queries naming the invitation's inviter or the link's creator) whose parameters are `by`."""
        at = w.time(e.timestamp)
        if by_sql == ("%s", "%s"):  # the grantor is known: a row of the batch
            self._intervals.add(dict(zip(_INTERVAL_COLUMNS, (
                f"{e.member_id}@{w.position}", str(e.originator_id), str(e.member_id), e.user_id, e.email, e.name,
                role_id, at, w.position, at, None, None, how, *by, via, None, None, None, lane(e.originator_id),
            ), strict=True)))  # fmt: skip
            return
        w.run(
            f"INSERT INTO {{access_intervals}} ({', '.join(_INTERVAL_COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s, %s,"
            f" %s, %s, %s, NULL, NULL, %s, {by_sql[0]}, {by_sql[1]}, %s, NULL, NULL, NULL, %s)",
            f"{e.member_id}@{w.position}", str(e.originator_id), str(e.member_id), e.user_id, e.email, e.name,
            role_id, at, w.position, at, how, *by, via, lane(e.originator_id),
        )  # fmt: skip

    def _regrant(self, w: Writer, e: Any, member_id: str, role_id: str, how: str) -> None:
        """The member's open interval ends and one with `role_id` begins, both by the event's actor. (Its open
        interval was read before the batch: `prepare`.)"""
        old = self._intervals.open.get(member_id)
        if old is None:
            return
        at = w.time(e.timestamp)
        self._end(w, e, member_id, how)
        self._intervals.add({**old, "interval_id": f"{member_id}@{w.position}", "role_id": role_id,
                             "from_position": w.position, "from_at": at, "to_position": None, "to_at": None,
                             "granted_how": how, "granted_by_id": e.actor_id, "granted_by_email": e.actor_email,
                             "granted_via": None, "ended_how": None, "ended_by_id": None,
                             "ended_by_email": None})  # fmt: skip

    def _end(self, w: Writer, e: Any, member_id: str, how: str) -> None:
        ended = {"ended_how": how, "ended_by_id": e.actor_id, "ended_by_email": e.actor_email}
        self._intervals.close(member_id, w.position, w.time(e.timestamp), **ended)

    # -- invitations and links ---------------------------------------------------------------------------------
    @apply.register(Organization.MemberInvited)
    def _invited(self, e: Organization.MemberInvited, w: Writer) -> None:
        self._moment(e, w)
        if e.replaces_invitation_id is not None:
            self._invitation_closed(w, e, str(e.replaces_invitation_id), "expired")
        self._grantors[str(e.invitation_id)] = (e.actor_id, e.actor_email)
        at = w.time(e.timestamp)
        self._invitations.add(dict(zip(_INVITATION_COLUMNS, (
            f"{e.invitation_id}@{w.position}", str(e.originator_id), str(e.invitation_id), e.email, str(e.role_id),
            "pending", e.actor_id, e.actor_email, at, w.time(e.expires_at), None, 0, None, "queued", None,
            w.position, at, None, None, lane(e.originator_id),
        ), strict=True)))  # fmt: skip

    @apply.register(Organization.InvitationResent)
    def _resent(self, e: Organization.InvitationResent, w: Writer) -> None:
        self._moment(e, w)
        self._invitation_version(w, e, str(e.invitation_id),
                          expires_at=w.time(e.expires_at), resent_at=w.time(e.timestamp), email_status="queued",
                          resend_count=lambda row: row["resend_count"] + 1)  # fmt: skip

    @apply.register(Organization.InvitationCancelled)
    def _cancelled(self, e: Organization.InvitationCancelled, w: Writer) -> None:
        self._moment(e, w)
        self._invitation_closed(w, e, str(e.invitation_id), "cancelled")

    @apply.register(Organization.InvitationEmailSent)
    def _email_sent(self, e: Organization.InvitationEmailSent, w: Writer) -> None:
        self._moment(e, w)
        self._invitation_version(w, e, str(e.invitation_id),
                          email_status="sent", last_sent_at=w.time(e.timestamp))  # fmt: skip

    @apply.register(Organization.InvitationEmailFailed)
    def _email_failed(self, e: Organization.InvitationEmailFailed, w: Writer) -> None:
        self._moment(e, w)
        self._invitation_version(w, e, str(e.invitation_id),
                          email_status="failed")  # fmt: skip

    @apply.register(Organization.InviteLinkCreated)
    def _link_created(self, e: Organization.InviteLinkCreated, w: Writer) -> None:
        self._moment(e, w)
        self._grantors[str(e.link_id)] = (e.actor_id, e.actor_email)
        w.run("INSERT INTO {access_links} (link_id, organization_id, created_by_id, created_by_email)"
              " VALUES (%s, %s, %s, %s)", str(e.link_id), str(e.originator_id), e.actor_id, e.actor_email)  # fmt: skip

    def _invitation_closed(self, w: Writer, e: Any, invitation_id: str, status: str) -> None:
        self._invitation_version(w, e, invitation_id,
                          status=status, closed_at=w.time(e.timestamp))  # fmt: skip

    # -- the organization --------------------------------------------------------------------------------------
    @apply.register(Organization.OrganizationDeleted)
    def _organization_deleted(self, e: Organization.OrganizationDeleted, w: Writer) -> None:
        self._moment(e, w)
        org, at = str(e.originator_id), w.time(e.timestamp)
        ended = {"ended_how": ORGANIZATION_DELETED, "ended_by_id": e.actor_id, "ended_by_email": e.actor_email}
        for member in [key for key, row in self._intervals.open.items() if row["organization_id"] == org]:
            self._intervals.close(member, w.position, at, **ended)
        for invitation in [key for key, row in self._invitations.open.items()
                           if row["organization_id"] == org and row["status"] == "pending"]:  # fmt: skip
            self._invitations.new_version(invitation, f"{invitation}@{w.position}", w.position, at,
                                          status="cancelled", closed_at=at)  # fmt: skip
        w.run(
            "UPDATE {access_intervals} SET to_position = %s, to_at = %s, ended_how = %s, ended_by_id = %s,"
            " ended_by_email = %s WHERE organization_id = %s AND to_position IS NULL",
            w.position, at, ORGANIZATION_DELETED, e.actor_id, e.actor_email, org,
        )  # fmt: skip
        self._new_versions(
            w,
            e,
            "access_invitations",
            _INVITATION_COLUMNS,
            "invitation_id",
            "organization_id = %s AND status = 'pending'",
            (org,),
            status="cancelled",
            closed_at=at,
        )
        w.run("UPDATE {access_roles} SET to_position = %s, to_at = %s WHERE organization_id = %s"
              " AND to_position IS NULL", w.position, at, org)  # fmt: skip

    # -- versions ----------------------------------------------------------------------------------------------
    @staticmethod
    def _insert(w: Writer, table: str, columns: Sequence[str], values: Sequence[Any]) -> None:
        marks = ", ".join(["%s"] * len(columns))
        w.run(f"INSERT INTO {{{table}}} ({', '.join(columns)}) VALUES ({marks})", *values)

    def _invitation_version(self, w: Writer, e: Any, invitation_id: str, **changes: Any) -> None:
        """A copy of the invitation's open version (read before the batch: `prepare`) with `changes` (values, or
        functions of the copied row), open from this event; the old one closes."""
        self._invitations.new_version(invitation_id, f"{invitation_id}@{w.position}", w.position,
                                      w.time(e.timestamp), **changes)  # fmt: skip

    @staticmethod
    def _new_versions(
        w: Writer,
        e: Any,
        table: str,
        columns: Sequence[str],
        key: str,
        where: str,
        params: Sequence[Any],
        **changes: Any,
    ) -> None:
        """New versions, open from this event, of the open versions `where` says, with `changes` (values, or
        `_Sql` expressions of the copied row); the versions copied close."""
        at = w.time(e.timestamp)
        values: dict[str, Any] = {"version_id": _Sql(f"{key} || %s"), "from_position": w.position, "from_at": at,
                                  "to_position": None, "to_at": None, **changes}  # fmt: skip
        selected, selected_params = [], []
        for column in columns:
            value = values.get(column, _Sql(column))
            if isinstance(value, _Sql):
                selected.append(value.expression)
                if "%s" in value.expression:
                    selected_params.append(f"@{w.position}")
            else:
                selected.append("%s")
                selected_params.append(value)
        w.run(
            f"INSERT INTO {{{table}}} ({', '.join(columns)}) SELECT {', '.join(selected)} FROM {{{table}}}"
            f" WHERE {where} AND to_position IS NULL",
            *selected_params, *params,
        )  # fmt: skip
        w.run(f"UPDATE {{{table}}} SET to_position = %s, to_at = %s WHERE {where} AND to_position IS NULL"
              " AND from_position <> %s", w.position, at, *params, w.position)  # fmt: skip

    @staticmethod
    def _close(w: Writer, e: Any, table: str, key: str, key_value: str) -> None:
        w.run(f"UPDATE {{{table}}} SET to_position = %s, to_at = %s WHERE {key} = %s AND to_position IS NULL",
              w.position, w.time(e.timestamp), key_value)  # fmt: skip


@dataclass(frozen=True)
class _Sql:
    """A value the database computes from the copied row (`_new_versions`)."""

    expression: str


# -- reads -------------------------------------------------------------------------------------------------------------
OPEN = 2**62  # stands for the end of a version still open, where SQL compares positions


def active(db: ReadDatabase, alias: str, organization_id: Any, position: int) -> str:
    """SQL: the version `alias` (of `organization_id`) is the one in force after the event at `position` (an
    int: put in as it is); on PostgreSQL as its span containing the position, which the spans' GiST finds."""
    k = int(position)
    if not db.is_sqlite:
        return f"{span(alias)} @> {lane(organization_id) + k}::bigint"
    return f"{alias}.from_position <= {k} AND ({alias}.to_position IS NULL OR {alias}.to_position > {k})"


def overlapping(db: ReadDatabase, alias: str, organization_id: Any, first: int, last: int) -> str:
    """SQL: the version `alias` was in force after some event from `first` to `last` (ints), both included."""
    first, last = int(first), int(last)
    if not db.is_sqlite:
        base = lane(organization_id)
        return f"{span(alias)} && int8range({base + first}, {base + last + 1})"
    return f"{alias}.from_position <= {last} AND ({alias}.to_position IS NULL OR {alias}.to_position > {first})"


def position_at(db: ReadDatabase, organization_id: UUID, at: datetime) -> int | None:
    """The position of the organization's last event at or before `at` (its state "as of" `at` is the state
    after it); None when it did not exist yet."""
    found = moment_at(db, organization_id, at)
    return None if found is None else found[0]


def moment_at(db: ReadDatabase, organization_id: UUID, at: datetime) -> tuple[int, int] | None:
    """The position of the organization's last event at or before `at`, and how many members it had then."""
    with read(db) as tables:
        rows = tables.fetch(
            "SELECT position, members FROM {access_timeline} WHERE organization_id = %s AND at <= %s"
            " ORDER BY at DESC, position DESC LIMIT 1",
            str(organization_id), db.to_db_time(at),
        )  # fmt: skip
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


_MEMBER_KEYS = (Key("i.joined_at", kind=datetime), Key("i.member_id"))


def members_as_of(
    db: ReadDatabase,
    organization_id: UUID,
    at: datetime,
    role_id: str | None = None,
    search: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    few: int = FEW,
) -> Page[MemberRecord]:
    """`GET /api/members` as it answered at `at` (no last activity: that is telemetry, not history)."""
    moment = moment_at(db, organization_id, at)
    if moment is None:
        return Page([], 0, None)
    position, count = moment
    org = str(organization_id)
    if count <= few and not db.is_sqlite:
        # Few members then: found by their spans (the GiST index), then ordered. Walking the organization's
        # intervals in order (below) would read all of a long history's for the first page.
        source, params = f"(SELECT * FROM {{access_intervals}} s WHERE s.organization_id = %s AND " \
                         f"{active(db, 's', org, position)} OFFSET 0) i", [org]  # fmt: skip
    else:
        source, params = "{access_intervals} i", []
    select = (
        f"SELECT i.member_id, i.organization_id, i.user_id, i.email, i.name, i.joined_at, {ROLE_COLUMNS} "
        f"FROM {source} JOIN {{access_roles}} r ON r.role_id = i.role_id AND {active(db, 'r', org, position)}"
    )
    where = ["i.organization_id = %s", active(db, "i", org, position)]
    params.append(org)
    if role_id:
        where.append("i.role_id = %s")
        params.append(role_id)
    if search:
        where.append("(LOWER(i.email) LIKE %s ESCAPE '!' OR LOWER(i.name) LIKE %s ESCAPE '!')")
        pattern = "%" + like_literal(search.lower()) + "%"
        params.extend([pattern, pattern])
    filtered = bool(role_id or search)  # else the timeline knows how many
    total, rows, more = ordered_page(
        db, source, select, " AND ".join(where), params, _MEMBER_KEYS, cursor, limit, counted=filtered
    )
    total = total if filtered else count
    members = [MemberRecord(r[0], r[1], r[2], r[3], r[4], role_record(db, r[6:11]), db.when(r[5]), None) for r in rows]
    return Page(members, total, cursor_after(members[-1].joined_at, members[-1].id) if more else None)


_ROLE_HOLDERS = (
    "(SELECT COUNT(*) FROM {{access_intervals}} i WHERE i.organization_id = r.organization_id"
    " AND i.role_id = r.role_id AND {held})"
)


def roles_as_of(db: ReadDatabase, organization_id: UUID, at: datetime, counted: bool = True) -> list[RoleRecord]:
    """Every role as it was at `at`, with how many members held it then (unless not `counted`: 0), in the
    roles' order."""
    position = position_at(db, organization_id, at)
    if position is None:
        return []
    held = active(db, "i", organization_id, position)
    count = _ROLE_HOLDERS.format(held=held) if counted else "0"
    with read(db) as tables:
        rows = tables.fetch(
            f"SELECT {ROLE_COLUMNS}, {count} FROM {{access_roles}} r WHERE r.organization_id = %s"
            f" AND {active(db, 'r', organization_id, position)} ORDER BY {order_by(ROLE_KEYS)}",
            str(organization_id),
        )
    return [role_record(db, row[:5], int(row[5])) for row in rows]


_INVITATION_KEYS = (Key("i.created_at", descending=True, kind=datetime), Key("i.invitation_id", descending=True))


def invitations_as_of(
    db: ReadDatabase,
    organization_id: UUID,
    at: datetime,
    status: str = "pending",
    limit: int = 50,
    cursor: str | None = None,
) -> Page[InvitationRecord]:
    """`GET /api/invitations` as it answered at `at`: statuses, expiry and e-mail outcomes as they were then."""
    position = position_at(db, organization_id, at)
    if position is None:
        return Page([], 0, None)
    select = (
        "SELECT i.invitation_id, i.organization_id, i.email, i.status, i.invited_by_id, i.invited_by_email, "
        f"i.created_at, i.expires_at, i.resent_at, i.resend_count, i.closed_at, {ROLE_COLUMNS}, i.email_status, "
        "i.last_sent_at FROM {access_invitations} i "
        f"JOIN {{access_roles}} r ON r.role_id = i.role_id AND r.from_position <= {int(position)}"
        " AND (r.to_position IS NULL OR r.to_position > i.from_position)"
    )  # the role as it was when the version began (a role is never deleted while an invitation gives it)
    where, params = ["i.organization_id = %s", active(db, "i", organization_id, position)], [str(organization_id)]
    where_status, status_params = status_filter(db, status, at)
    total, rows, more = ordered_page(
        db, "{access_invitations} i", select, " AND ".join([*where, *where_status]), [*params, *status_params],
        _INVITATION_KEYS, cursor, limit,
    )  # fmt: skip
    items = [invitation_record(db, row, at) for row in rows]
    return Page(items, total, cursor_after(items[-1].created_at, items[-1].id) if more else None)


def invitation_record(db: ReadDatabase, row: Sequence[Any], at: datetime) -> InvitationRecord:
    t = db.from_db_time
    expires_at = db.when(row[7])
    status = "expired" if row[3] == "pending" and expires_at <= at else row[3]
    return InvitationRecord(
        row[0], row[1], row[2], status, role_record(db, row[11:16]), row[4], row[5], db.when(row[6]), expires_at,
        t(row[8]), int(row[9]), t(row[10]), row[16], t(row[17]),
    )  # fmt: skip


# -- a member's history, and access reviews ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """How an interval began or ended: what did it (`how`), who (`by`), through which invitation or link."""

    how: str
    by: ActorRef
    via: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"how": self.how, "by": {"userId": self.by.user_id, "email": self.by.email}, "via": self.via}


@dataclass(frozen=True)
class Interval:
    """One span of time over which a member held one role."""

    member_id: str
    user_id: str
    email: str
    name: str
    role: RoleRecord  # as it was when the span began (or, in an access review, when it gave the permission)
    from_at: datetime
    to_at: datetime | None
    granted: Change
    ended: Change | None
    from_position: int
    to_position: int | None

    def as_json(self) -> dict[str, Any]:
        """As the API answers it (api.schemas.IntervalSchema): built directly, as a member with a long history
        has hundreds of intervals, which the schema would take a hundred microseconds each to write."""
        role = self.role
        return {
            "role": {"id": role.id, "name": role.name, "permissions": list(role.permissions)},
            "since": self.from_at.isoformat(),
            "until": None if self.to_at is None else self.to_at.isoformat(),
            "granted": self.granted.as_json(),
            "ended": None if self.ended is None else self.ended.as_json(),
        }


_INTERVAL_SELECT = (
    "SELECT i.member_id, i.user_id, i.email, i.name, i.from_at, i.to_at, i.granted_how, i.granted_by_id, "
    "i.granted_by_email, i.granted_via, i.ended_how, i.ended_by_id, i.ended_by_email, i.from_position, "
    f"i.to_position, {ROLE_COLUMNS} FROM {{access_intervals}} i JOIN {{access_roles}} r ON r.role_id = i.role_id"
)
# the role version in force when the interval began
_AT_START = " AND r.from_position <= i.from_position AND (r.to_position IS NULL OR r.to_position > i.from_position)"


def _interval(db: ReadDatabase, row: Sequence[Any]) -> Interval:
    ended = Change(row[10], ActorRef(row[11] or "", row[12] or "")) if row[10] else None
    return Interval(
        row[0], row[1], row[2], row[3], role_record(db, row[15:20]), db.when(row[4]), db.from_db_time(row[5]),
        Change(row[6], ActorRef(row[7] or "", row[8] or ""), row[9]), ended, int(row[13]),
        None if row[14] is None else int(row[14]),
    )  # fmt: skip


def member_history(db: ReadDatabase, organization_id: UUID, member_id: UUID) -> Holder | None:
    """The member, as their latest interval names them, with every role they held, oldest first, and who granted
    and ended each; None for no such member, now or before."""
    with read(db) as tables:
        rows = tables.fetch(
            f"{_INTERVAL_SELECT}{_AT_START} WHERE i.organization_id = %s AND i.member_id = %s"
            " ORDER BY i.from_position",
            str(organization_id), str(member_id),
        )  # fmt: skip
    intervals = [_interval(db, row) for row in rows]
    if not intervals:
        return None
    last = intervals[-1]
    return Holder(last.member_id, last.user_id, last.email, last.name, intervals)


@dataclass(frozen=True)
class Holder:
    """Someone who held a permission in an access review's window, with each interval that gave it."""

    member_id: str
    user_id: str
    email: str
    name: str
    intervals: list[Interval]

    def as_json(self) -> dict[str, Any]:
        """As the API answers it (api.schemas.MemberHistorySchema)."""
        return {"memberId": self.member_id, "userId": self.user_id, "email": self.email, "name": self.name,
                "intervals": [interval.as_json() for interval in self.intervals]}  # fmt: skip


def access_review(
    db: ReadDatabase, organization_id: UUID, permission: str, since: datetime, until: datetime
) -> list[Holder]:
    """Everyone who held `permission` at any moment from `since` to `until` (both included), by e-mail, with the
    intervals that gave it to them (a role's version that held it, overlapping the window)."""
    last = position_at(db, organization_id, until)
    if last is None:
        return []
    first = position_at(db, organization_id, since) or 0
    pattern = f"% {like_literal(permission)} %"
    # The interval, the role's version and the window overlap two by two, so all three do (Helly, on a line).
    version = f"{overlapping(db, 'r', organization_id, first, last)} AND (' ' || r.permissions || ' ') LIKE %s"
    with read(db) as tables:
        # First the roles that gave the permission in the window (a few versions): their intervals are then
        # read by role, not every interval of the window.
        roles = [row[0] for row in tables.fetch(
            f"SELECT DISTINCT r.role_id FROM {{access_roles}} r WHERE r.organization_id = %s AND {version}",
            str(organization_id), pattern,
        )]  # fmt: skip
        if not roles:
            return []
        rows = tables.fetch(
            f"{_INTERVAL_SELECT} AND {version} AND r.from_position < COALESCE(i.to_position, {OPEN})"
            " AND (r.to_position IS NULL OR r.to_position > i.from_position)"
            f" WHERE i.organization_id = %s AND i.role_id IN ({', '.join(['%s'] * len(roles))})"
            f" AND {overlapping(db, 'i', organization_id, first, last)}"
            " ORDER BY i.email, i.member_id, i.from_position, r.from_position",
            pattern, str(organization_id), *roles,
        )  # fmt: skip
    holders: dict[str, Holder] = {}
    seen: set[tuple[str, int]] = set()
    for row in rows:
        interval = _interval(db, row)
        if (interval.member_id, interval.from_position) in seen:
            continue  # the same interval through a later version of its role: the first one tells it
        seen.add((interval.member_id, interval.from_position))
        holder = holders.setdefault(
            interval.member_id, Holder(interval.member_id, interval.user_id, interval.email, interval.name, [])
        )
        holder.intervals.append(interval)
    return list(holders.values())


REVIEW_COLUMNS = ("email", "name", "userId", "memberId", "role", "permissions", "since", "until", "grantedHow",
                  "grantedBy", "grantedVia", "endedHow", "endedBy")  # fmt: skip


def review_as_json(permission: str, since: datetime, until: datetime, holders: list[Holder]) -> dict[str, Any]:
    """An access review as the API answers it (api.schemas.AccessReviewSchema) and the CLI prints it."""
    return {"permission": permission, "since": since.isoformat(), "until": until.isoformat(),
            "holders": [holder.as_json() for holder in holders]}  # fmt: skip


def review_csv(holders: list[Holder]) -> str:
    """An access review as CSV (REVIEW_COLUMNS, then a row per interval), safe to open in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REVIEW_COLUMNS)
    writer.writerows(review_rows(holders))
    return out.getvalue()


def review_rows(holders: list[Holder]) -> Iterator[list[str]]:
    """An access review as CSV rows under REVIEW_COLUMNS: one per interval, safe to open in a spreadsheet."""
    for holder in holders:
        for i in holder.intervals:
            ended = i.ended
            yield [spreadsheet_cell(cell) for cell in (
                holder.email, holder.name, holder.user_id, holder.member_id, i.role.name, " ".join(i.role.permissions),
                i.from_at.isoformat(), i.to_at.isoformat() if i.to_at else "", i.granted.how,
                i.granted.by.email or i.granted.by.user_id, i.granted.via or "", ended.how if ended else "",
                (ended.by.email or ended.by.user_id) if ended else "",
            )]  # fmt: skip
