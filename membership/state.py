"""What an Organization holds: small frozen records, replaced (never changed) when an event applies.

The aggregate keeps them in dicts keyed by the record's id as text (`str(record.id)`), and its
indexes point at those keys: a snapshot is the aggregate's attributes as JSON, whose object
keys are strings. Inside a record, ids are `UUID`s and times `datetime`s. Each record
has a transcoding (registered by `Organizations`) that stores it as a JSON object of plain
values. Snapshots taken before the records existed (aggregate class_version 1) hold plain
dicts; `upcast_v1_v2` turns them into records, so they load to the state a replay gives.

A field added to a record later needs a default, and its transcoding's `decode` must accept
the stored form without it: snapshots of the previous shape are still in the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar
from uuid import UUID

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import JSONTranscoder, Transcoding
from eventsourcing.utils import register_topic

InvitationStatus = Literal["pending", "accepted", "cancelled", "expired"]
EmailStatus = Literal["sent", "failed"]


@dataclass(frozen=True, slots=True)
class Role:
    id: UUID
    name: str
    description: str
    permissions: frozenset[str]  # closed: every `manage` with its `view`
    key: str | None = None  # a system role's key ("owner", "admin", ...); custom roles have none

    @property
    def system(self) -> bool:
        """System roles cannot be edited or deleted."""
        return self.key is not None


@dataclass(frozen=True, slots=True)
class Member:
    id: UUID
    user_id: str
    email: str
    name: str
    role_id: UUID
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class Invitation:
    id: UUID
    email: str
    role_id: UUID
    status: InvitationStatus  # as recorded: expiry needs no event (see Organization.invitation_status)
    expires_at: datetime
    expires_in_days: int
    invited_by: str  # the inviter's user id
    token_nonce: str
    email_status: EmailStatus | None = None  # what became of the e-mail for the current token
    earlier_nonces: tuple[str, ...] = ()  # of the tokens resends replaced: their holders are told so


@dataclass(frozen=True, slots=True)
class InviteLink:
    id: UUID
    role_id: UUID
    max_uses: int  # 0: unlimited
    use_count: int
    expires_at: datetime
    code_nonce: str
    created_by: str  # the creator's user id
    deleted: bool = False


Record = TypeVar("Record", Role, Member, Invitation, InviteLink)


@lru_cache(maxsize=1 << 16)
def key_of(record_id: UUID) -> str:
    """The dict key of a record id: `str(record_id)`, remembered (0.25 µs instead of 0.8 µs), because a
    command converts the same few ids many times (a bulk job ten thousand times over)."""
    return str(record_id)


def change(records: MutableMapping[str, Record], record_id: UUID, **changes: Any) -> Record:
    """Replace the record with `record_id` by a copy with `changes`; returns the copy."""
    key = key_of(record_id)
    records[key] = updated = replace(records[key], **changes)
    return updated


def role_as_dict(role: Role) -> dict[str, Any]:
    """A role as `Organization.Created` carries it (and dict-state snapshots held it)."""
    return {
        "id": str(role.id),
        "key": role.key,
        "name": role.name,
        "description": role.description,
        "permissions": sorted(role.permissions),
        "system": role.system,
    }


def role_from_dict(role: dict[str, Any]) -> Role:
    return Role(UUID(role["id"]), role["name"], role["description"], frozenset(role["permissions"]), role["key"])


# -- transcodings: each record as a JSON object of plain values -------------------------------------------------
@lru_cache(maxsize=4096)
def _role_id(text: str) -> UUID:
    """Role ids repeat in every member, invitation and link: parse each once (a snapshot has 100,000s)."""
    return UUID(text)


class RoleAsDict(Transcoding):
    type = Role
    name = "membership_role"

    def encode(self, obj: Role) -> dict[str, Any]:
        return role_as_dict(obj)

    def decode(self, data: dict[str, Any]) -> Role:
        return role_from_dict(data)


class MemberAsDict(Transcoding):
    type = Member
    name = "membership_member"

    def encode(self, obj: Member) -> dict[str, Any]:
        return {
            "id": str(obj.id),
            "user_id": obj.user_id,
            "email": obj.email,
            "name": obj.name,
            "role_id": str(obj.role_id),
            "joined_at": obj.joined_at.isoformat(),
        }

    def decode(self, data: dict[str, Any]) -> Member:
        return Member(
            UUID(data["id"]),
            data["user_id"],
            data["email"],
            data["name"],
            _role_id(data["role_id"]),
            datetime.fromisoformat(data["joined_at"]),
        )


class InvitationAsDict(Transcoding):
    type = Invitation
    name = "membership_invitation"

    def encode(self, obj: Invitation) -> dict[str, Any]:
        return {
            "id": str(obj.id),
            "email": obj.email,
            "role_id": str(obj.role_id),
            "status": obj.status,
            "expires_at": obj.expires_at.isoformat(),
            "expires_in_days": obj.expires_in_days,
            "invited_by": obj.invited_by,
            "token_nonce": obj.token_nonce,
            "email_status": obj.email_status,
            "earlier_nonces": list(obj.earlier_nonces),
        }

    def decode(self, data: dict[str, Any]) -> Invitation:
        return Invitation(
            UUID(data["id"]),
            data["email"],
            _role_id(data["role_id"]),
            data["status"],
            datetime.fromisoformat(data["expires_at"]),
            data["expires_in_days"],
            data["invited_by"],
            data["token_nonce"],
            data["email_status"],
            tuple(data.get("earlier_nonces", ())),  # absent from snapshots taken before it was kept
        )


class InviteLinkAsDict(Transcoding):
    type = InviteLink
    name = "membership_invite_link"

    def encode(self, obj: InviteLink) -> dict[str, Any]:
        return {
            "id": str(obj.id),
            "role_id": str(obj.role_id),
            "max_uses": obj.max_uses,
            "use_count": obj.use_count,
            "expires_at": obj.expires_at.isoformat(),
            "code_nonce": obj.code_nonce,
            "created_by": obj.created_by,
            "deleted": obj.deleted,
        }

    def decode(self, data: dict[str, Any]) -> InviteLink:
        return InviteLink(
            UUID(data["id"]),
            _role_id(data["role_id"]),
            data["max_uses"],
            data["use_count"],
            datetime.fromisoformat(data["expires_at"]),
            data["code_nonce"],
            data["created_by"],
            data["deleted"],
        )


def register_transcodings(transcoder: JSONTranscoder) -> None:
    for transcoding in (RoleAsDict(), MemberAsDict(), InvitationAsDict(), InviteLinkAsDict(), MemberTableAsColumns()):
        transcoder.register(transcoding)


# -- the members, and their compact snapshots ---------------------------------------------------------------------
_COLUMNS = ("user_id", "email", "name", "role", "joined_at")


class MemberTable(MutableMapping[str, Member]):
    """An organization's members by key (`str(member.id)`), as a dict would hold them.

    Loaded from a snapshot, the members stay as the snapshot's columns (JSON arrays, one per field) and each
    becomes a `Member` record only when a command reads it: a command touches a handful of members, so a
    100,000-member organization loads without making 100,000 UUIDs, datetimes and records (0.65 s of a
    0.7 s cold load). Iterating reads them all.
    """

    __slots__ = ("_loaded", "_rows", "_columns", "_role_ids")

    def __init__(self, members: Mapping[str, Member] | None = None) -> None:
        self._loaded: dict[str, Member] = dict(members or {})
        self._rows: dict[str, int] = {}  # key -> row of the columns, for members not read yet
        self._columns: dict[str, list[Any]] = {}
        self._role_ids: list[UUID] = []

    @classmethod
    def from_columns(cls, keys: list[str], columns: dict[str, list[Any]], role_ids: list[UUID]) -> MemberTable:
        """The members a snapshot holds (`MemberTableAsColumns`), none read yet."""
        table = cls()
        table._rows = dict(zip(keys, range(len(keys)), strict=True))
        table._columns, table._role_ids = columns, role_ids
        return table

    def index(self, field: str) -> dict[str, str]:
        """`{member.<field>: key}` for every member ("user_id" or "email"), without reading the rows."""
        index = {getattr(member, field): key for key, member in self._loaded.items()}
        column = self._columns.get(field, [])
        if len(self._rows) == len(column):  # every row unread, in order: keys and column pair up as they are
            index.update(zip(column, self._rows, strict=True))
        else:
            index.update((column[row], key) for key, row in self._rows.items())
        return index

    def __getitem__(self, key: str) -> Member:
        try:
            return self._loaded[key]
        except KeyError:
            row = self._rows.pop(key)  # KeyError: not a member
        columns = self._columns
        member = self._loaded[key] = Member(
            UUID(key),
            columns["user_id"][row],
            columns["email"][row],
            columns["name"][row],
            self._role_ids[columns["role"][row]],
            datetime.fromisoformat(columns["joined_at"][row]),
        )
        return member

    def __setitem__(self, key: str, member: Member) -> None:
        self._rows.pop(key, None)
        self._loaded[key] = member

    def __delitem__(self, key: str) -> None:
        if self._rows.pop(key, None) is None:
            del self._loaded[key]

    def __contains__(self, key: object) -> bool:
        return key in self._loaded or key in self._rows

    def __len__(self) -> int:
        return len(self._loaded) + len(self._rows)

    def __iter__(self) -> Iterator[str]:
        # Copies of the keys: reading a row while iterating (items(), values()) moves it from one dict to the other.
        yield from list(self._loaded)
        yield from list(self._rows)

    def __repr__(self) -> str:
        return f"MemberTable({len(self)} members, {len(self._loaded)} read)"


class MemberTableAsColumns(Transcoding):
    """A JSON array per field rather than an object per member, and each role id once: a 100,000-member
    organization's snapshot is a third of the size, and loading it makes no JSON object per member (nor,
    until read, any record: `MemberTable`)."""

    type = MemberTable
    name = "membership_member_table"

    def encode(self, obj: MemberTable) -> dict[str, Any]:
        loaded = list(obj._loaded.values())  # noqa: SLF001 -- the table's own storage form
        rows = list(obj._rows.values())  # noqa: SLF001
        old = obj._columns  # noqa: SLF001
        old_roles = [obj._role_ids[index] for index in old.get("role", ())]  # noqa: SLF001
        role_of_rows = [old_roles[row] for row in rows]
        role_ids = list(dict.fromkeys([*(member.role_id for member in loaded), *role_of_rows]))
        position = {role_id: index for index, role_id in enumerate(role_ids)}
        column = {field: [old[field][row] for row in rows] for field in ("user_id", "email", "name", "joined_at")}
        return {
            "id": [*obj._loaded, *obj._rows],  # noqa: SLF001 -- the keys: str(member.id)
            "user_id": [*(member.user_id for member in loaded), *column["user_id"]],
            "email": [*(member.email for member in loaded), *column["email"]],
            "name": [*(member.name for member in loaded), *column["name"]],
            "role_ids": [str(role_id) for role_id in role_ids],
            "role": [*(position[member.role_id] for member in loaded), *(position[r] for r in role_of_rows)],
            "joined_at": [*(member.joined_at.isoformat() for member in loaded), *column["joined_at"]],
        }

    def decode(self, data: dict[str, Any]) -> MemberTable:
        role_ids = [_role_id(text) for text in data["role_ids"]]
        return MemberTable.from_columns(data["id"], {field: data[field] for field in _COLUMNS}, role_ids)


class OrganizationSnapshot(Snapshot):
    """An Organization's snapshot: its state, with the members as one `MemberTable` (columns) and without the
    indexes over them (`member_by_user`, `member_by_email`), which loading rebuilds. Snapshots stored before it
    (the library's `Snapshot`, members as a JSON object each) still load as they are."""

    TOPIC = "membership:Organization.Snapshot"

    @classmethod
    def take(cls, aggregate: Any) -> OrganizationSnapshot:
        snapshot = super().take(aggregate)
        state = snapshot.state  # a copy of the aggregate's attributes, made for this snapshot
        if not isinstance(state["members"], MemberTable):  # an aggregate upcast from a dict-state snapshot
            state["members"] = MemberTable(state["members"])
        del state["member_by_user"], state["member_by_email"]
        return snapshot

    def mutate(self, _: None) -> Any:
        organization = super().mutate(None)
        state = vars(organization)
        members: MemberTable = state["members"]
        state["member_by_user"] = members.index("user_id")
        state["member_by_email"] = members.index("email")
        return organization


register_topic(OrganizationSnapshot.TOPIC, OrganizationSnapshot)


# -- snapshots of the dict state (class_version 1) ---------------------------------------------------------------
def upcast_v1_v2(state: dict[str, Any]) -> None:
    """Records for the dicts of a snapshot taken before they existed; the content is the same.

    A link's `redeemed_by` (user id -> member id) moves to the aggregate's `redemptions`,
    so that joining by link does not copy it into a new frozen record each time.
    """
    links: dict[str, dict[str, Any]] = state["links"]
    state["roles"] = {key: role_from_dict(role) for key, role in state["roles"].items()}
    state["members"] = MemberTable(
        {
            key: Member(UUID(key), m["user_id"], m["email"], m["name"], UUID(m["role_id"]), m["joined_at"])
            for key, m in state["members"].items()
        }
    )
    state["invitations"] = {
        key: Invitation(
            UUID(key),
            i["email"],
            UUID(i["role_id"]),
            i["status"],
            i["expires_at"],
            i["expires_in_days"],
            i["invited_by"],
            i["token_nonce"],
            i.get("email_status"),
        )
        for key, i in state["invitations"].items()
    }
    state["links"] = {
        key: InviteLink(
            UUID(key),
            UUID(link["role_id"]),
            link["max_uses"],
            link["use_count"],
            link["expires_at"],
            link["code_nonce"],
            link["created_by"],
            link["deleted"],
        )
        for key, link in links.items()
    }
    state["redemptions"] = {key: dict(link["redeemed_by"]) for key, link in links.items()}
