"""The organization's state records: frozen, and stored in snapshots through the application's transcoder."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from hypothesis import given
from hypothesis import strategies as st

from membership import Actor, Organizations
from membership.application import project_organization
from membership.organization import system_role_id
from membership.permissions import ALL_PERMISSIONS
from membership.state import Invitation, InviteLink, Member, OrganizationSnapshot, Role
from tests.factories import new_actor

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)  # lone surrogates are not UTF-8
ZONES = st.integers(-23 * 60, 23 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
TIMES = st.datetimes(timezones=ZONES)
ROLES = st.builds(
    Role, st.uuids(), TEXT, TEXT, st.frozensets(st.sampled_from(sorted(ALL_PERMISSIONS))), st.none() | TEXT
)
MEMBERS = st.builds(Member, st.uuids(), TEXT, TEXT, TEXT, st.uuids(), TIMES)
INVITATIONS = st.builds(
    Invitation,
    st.uuids(),
    TEXT,
    st.uuids(),
    st.sampled_from(["pending", "accepted", "cancelled", "expired"]),
    TIMES,
    st.integers(1, 30),
    TEXT,
    TEXT,
    st.sampled_from([None, "sent", "failed"]),
)
LINKS = st.builds(InviteLink, st.uuids(), st.uuids(), st.integers(0, 10**6), st.integers(0, 10**6), TIMES, TEXT, TEXT)
RECORDS = ROLES | MEMBERS | INVITATIONS | LINKS


@pytest.fixture(scope="module")
def transcoder() -> Iterator[JSONTranscoder]:
    app = Organizations()
    assert isinstance(app.mapper.transcoder, JSONTranscoder)
    yield app.mapper.transcoder
    app.close()


@given(record=RECORDS)
def test_every_record_round_trips_through_the_applications_transcoder(
    transcoder: JSONTranscoder, record: object
) -> None:
    assert transcoder.decode(transcoder.encode(record)) == record


@given(members=st.lists(MEMBERS, max_size=5), links=st.lists(LINKS, max_size=3))
def test_records_keyed_by_id_round_trip_as_a_snapshot_holds_them(
    transcoder: JSONTranscoder, members: list[Member], links: list[InviteLink]
) -> None:
    state: dict[str, Any] = {
        "members": {str(m.id): m for m in members},
        "links": {str(link.id): link for link in links},
        "redemptions": {str(link.id): {"auth0|x": str(uuid4())} for link in links},
    }
    assert transcoder.decode(transcoder.encode(state)) == state


def test_a_record_is_stored_as_one_object_of_plain_values(transcoder: JSONTranscoder) -> None:
    """Snapshots keep this form: change it only with a new aggregate class_version and its upcaster."""
    member = Member(
        UUID("8a1f7a49-3a5f-4b8e-9a8e-4c1d2b3e4f50"),
        "auth0|ada",
        "ada@example.com",
        "Ada",
        UUID("0b5c2c6e-6c1c-5f3b-9f3e-2a1b3c4d5e6f"),
        datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert json.loads(transcoder.encode(member)) == {
        "_type_": "membership_member",
        "_data_": {
            "id": "8a1f7a49-3a5f-4b8e-9a8e-4c1d2b3e4f50",
            "user_id": "auth0|ada",
            "email": "ada@example.com",
            "name": "Ada",
            "role_id": "0b5c2c6e-6c1c-5f3b-9f3e-2a1b3c4d5e6f",
            "joined_at": "2030-01-02T03:04:05+00:00",
        },
    }


@pytest.mark.parametrize("snapshot_class", [OrganizationSnapshot, Snapshot], ids=["ours", "the-librarys"])
def test_organizations_registers_the_records_so_its_snapshots_can_be_stored(snapshot_class: type[Snapshot]) -> None:
    app = Organizations()
    organization_id = app.create_organization(new_actor("owner"), "Acme").organization_id
    for n in range(3):
        app.accept_invite_link(new_actor(f"joiner{n}"), _link(app, organization_id))
    snapshot = snapshot_class.take(app.get_organization(organization_id))
    library_only = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):  # the library's own
        library_only.register(transcoding)
    with pytest.raises(TranscodingNotRegisteredError):
        library_only.encode(snapshot.state)
    stored = app.mapper.to_stored_event(snapshot)
    assert stored.topic == snapshot_class.TOPIC if snapshot_class is OrganizationSnapshot else "eventsourcing.domain:Snapshot"
    assert project_organization(None, [app.mapper.to_domain_event(stored)]) == app.get_organization(organization_id)
    app.close()


def _link(app: Organizations, organization_id: Any) -> str:
    owner = app.get_organization(organization_id).owner
    role_id = system_role_id(organization_id, "viewer")
    owner_actor = Actor(owner.user_id, owner.email, owner.name)
    return app.create_invite_link(organization_id, owner_actor, role_id).secret or ""


def test_our_snapshot_holds_members_as_columns_without_their_indexes() -> None:
    app = Organizations()
    organization_id = app.create_organization(new_actor("owner"), "Acme").organization_id
    app.accept_invite_link(new_actor("joiner"), _link(app, organization_id))
    organization = app.get_organization(organization_id)
    state = json.loads(app.mapper.to_stored_event(organization.Snapshot.take(organization)).state)["state"]
    assert "member_by_user" not in state and "member_by_email" not in state
    table = state["members"]["_data_"]
    assert state["members"]["_type_"] == "membership_member_table" and len(table["id"]) == 2
    assert sorted(table["email"]) == sorted(m.email for m in organization.members.values())
    assert len(table["role_ids"]) == 2 and sorted(table["role"]) == [0, 1]  # Owner and Viewer, each named once
    assert organization.member_by_user and organization.member_by_email  # the live object keeps its indexes
    app.close()


@given(record=RECORDS)
def test_records_are_frozen(record: Any) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.id = uuid4()
