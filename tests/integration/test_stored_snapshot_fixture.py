"""Snapshots already in the store keep working after the state became records.

tests/fixtures/organization_snapshot_v1.json was written once, by the domain whose
state was plain dicts (aggregate class_version 1): the stored events of an
organization (members, invitations cancelled, accepted, pending and e-mailed,
links used and deleted, a custom role) and the snapshot that code took at
version 19, before five more events. Never regenerate it. Loading through it
upcasts the dicts to records (`membership.state.upcast_v1_v2`); the snapshot
worker's next snapshots are records, their members as columns (`OrganizationSnapshot`).

The two later forms of a snapshot at the same version are fixtures too, written once the same way:
`organization_snapshot_v2_records.json` (records, each member a JSON object, the library's Snapshot
class) and `organization_snapshot_v2_columns.json` (`membership:Organization.Snapshot`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from membership import Actor, Organization, Organizations
from membership import exceptions as err
from membership.application import project_organization
from membership.state import Member
from service.bootstrap import Services
from workers.snapshots import SnapshotTaker

FIXTURES = Path(__file__).parent.parent / "fixtures"
FIXTURE = json.loads((FIXTURES / "organization_snapshot_v1.json").read_text())
LATER_FORMS = ["organization_snapshot_v2_records.json", "organization_snapshot_v2_columns.json"]
ORG_ID = UUID(FIXTURE["organization_id"])
SNAPSHOT_VERSION = 19
LINK_USER = Actor("auth0|snap-link", "link@snap.example", "Lin Ky")  # joined by link before the snapshot, removed after


def stored(row: dict[str, Any]) -> StoredEvent:
    return StoredEvent(UUID(row["originator_id"]), row["originator_version"], row["topic"], row["state"].encode())


def load_fixture(app: Organizations) -> list[Any]:
    """The events and the old snapshot into the store; returns the events as the application decodes them."""
    app.recorder.insert_events([stored(row) for row in FIXTURE["events"]])
    assert app.snapshots is not None
    app.snapshots.recorder.insert_events([stored(FIXTURE["snapshot"])])
    return list(app.events.get(ORG_ID))


def replayed(events: list[Any], version: int | None = None) -> Organization:
    org = project_organization(None, events[:version])
    assert org is not None
    return org


def test_the_fixture_snapshot_is_the_old_dict_state() -> None:
    state = json.loads(FIXTURE["snapshot"]["state"])
    assert FIXTURE["snapshot"]["originator_version"] == SNAPSHOT_VERSION < len(FIXTURE["events"])
    assert "class_version" not in state["state"]
    assert state["state"]["members"] and all("_type_" not in m for m in state["state"]["members"].values())


def test_the_old_snapshot_alone_gives_the_state_replaying_its_events_gives(organizations: Organizations) -> None:
    events = load_fixture(organizations)
    assert organizations.snapshots is not None
    (snapshot,) = organizations.snapshots.get(ORG_ID)

    from_snapshot = replayed([snapshot])

    assert from_snapshot == replayed(events, SNAPSHOT_VERSION)
    assert all(isinstance(m, Member) for m in from_snapshot.members.values())


@pytest.mark.parametrize("fixture", LATER_FORMS)
def test_each_later_form_of_snapshot_alone_gives_the_state_replaying_its_events_gives(
    organizations: Organizations, fixture: str
) -> None:
    events = load_fixture(organizations)
    later = json.loads((FIXTURES / fixture).read_text())["snapshot"]
    assert later["originator_version"] == SNAPSHOT_VERSION
    (snapshot,) = [organizations.mapper.to_domain_event(stored(later))]
    assert replayed([snapshot]) == replayed(events, SNAPSHOT_VERSION)


def test_an_organization_whose_latest_snapshot_is_old_loads_to_the_replayed_state(
    make_organizations: Callable[..., Organizations],
) -> None:
    events = load_fixture(make_organizations())
    reader = make_organizations()  # another process: nothing cached

    org = reader.get_organization(ORG_ID)

    assert org == replayed(events)
    assert org.version == len(events) == 24
    assert {m.email: org.role_of(m).name for m in org.members.values()} == {
        "owner@snap.example": "Admin",
        "admin@snap.example": "Owner",
        "dev@snap.example": "QA",
        "later@snap.example": "QA",
    }
    assert {i.email: (i.status, i.email_status) for i in org.invitations.values()} == {
        "admin@snap.example": ("accepted", None),
        "dev@snap.example": ("accepted", "sent"),
        "gone@snap.example": ("cancelled", None),
        "pending@snap.example": ("pending", None),  # resent after the snapshot: a new token, no e-mail yet
        "bounce@snap.example": ("pending", "failed"),
        "later@snap.example": ("cancelled", None),  # joined by link instead
    }
    assert sorted((link.use_count, link.deleted) for link in org.links.values()) == [(0, True), (2, False)]


@pytest.mark.parametrize("version", range(SNAPSHOT_VERSION, 25))
def test_temporal_queries_through_the_old_snapshot_equal_the_replay(
    make_organizations: Callable[..., Organizations], version: int
) -> None:
    events = load_fixture(make_organizations())
    assert make_organizations().organization_at(ORG_ID, version) == replayed(events, version)


def test_commands_follow_the_rules_on_state_from_the_old_snapshot(organizations: Organizations) -> None:
    load_fixture(organizations)
    with organizations.reading(ORG_ID) as org:
        owner = Actor(org.owner.user_id, org.owner.email, org.owner.name)
        (link,) = [link for link in org.links.values() if not link.deleted]
    now = datetime(2026, 2, 3, tzinfo=UTC)
    org = organizations.get_organization(ORG_ID)
    with pytest.raises(err.InviteLinkAlreadyUsedError):  # who joined by the link is in the old snapshot
        org.redeem_invite_link(LINK_USER, link.id, uuid4(), now)
    with pytest.raises(err.AlreadyInvitedError):  # the pending invitation is too
        org.invite_member(owner, uuid4(), "bounce@snap.example", link.role_id, "nonce", now)
    receipt = organizations.create_role(ORG_ID, owner, "Auditor", "", ["view:billing"])
    assert organizations.get_organization(ORG_ID).get_role(receipt.id).name == "Auditor"  # type: ignore[arg-type]


def test_the_snapshot_worker_takes_new_snapshots_after_the_old_one(
    services: Services, make_organizations: Callable[..., Organizations]
) -> None:
    app = services.organizations
    events = load_fixture(app)

    assert SnapshotTaker(app, services.read_db, interval=5).run_once() == 1  # at 20, the latest multiple of 5

    assert app.snapshots is not None
    newest = list(app.snapshots.recorder.select_events(ORG_ID, desc=True, limit=1))[0]
    state = json.loads(zlib.decompress(newest.state))["state"]  # snapshots are compressed (SnapshotCompressor)
    assert (newest.originator_version, newest.topic, state["class_version"]) == (20, "membership:Organization.Snapshot", 2)
    assert state["members"]["_type_"] == "membership_member_table" and len(state["members"]["_data_"]["id"]) == 4
    assert make_organizations().get_organization(ORG_ID) == replayed(events)
