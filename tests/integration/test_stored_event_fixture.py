"""Events are forever: committed fixtures of stored events must still replay.

tests/fixtures/organization_events_v*.jsonl were each written once, by the
version of the domain that introduced their event types, and must never be
regenerated. If these tests fail, an event class, field or topic changed
incompatibly: add an upcaster or register the old topic instead of editing a
fixture. A new event type needs a new fixture file (the coverage test says so).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.utils import register_topic

from membership import Organization, Organizations
from membership.events import missing_fields
from membership.permissions import ALL_PERMISSIONS
from membership.state import Role
from projections.engine.decoding import MissingFieldsError, ProjectionDecoder, UndecodableEvent
from service.bootstrap import Services
from tests.helpers import table_rows

FIXTURES = Path(__file__).parent.parent / "fixtures"
FIXTURE = FIXTURES / "organization_events_v1.jsonl"
ORG_ID = UUID("0f817fcb-018e-4563-95fe-e9d2f44da66c")
MAIL_ORG_ID = UUID("acfe1439-f1e2-42c2-a963-c34ec24cf327")
PARKED_ORG_ID = UUID("5b2d7c1e-3f4a-4c6b-9e8d-7a1b2c3d4e5f")
DELETED_ORG_ID = UUID("9c4e2a71-6b3d-4f85-a0c2-1d7e8f9a0b3c")
ERASURE_ORG_ID = UUID("0d2cb1d4-89f7-46f6-9cf6-d1c1e8e1f3cf")


def load_fixture(app: Organizations, fixture: Path = FIXTURE) -> None:
    rows = [json.loads(line) for line in fixture.read_text().splitlines()]
    app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=UUID(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"].encode(),
            )
            for row in rows
        ]
    )


def role_named(org: Organization, name: str) -> Role:
    return next(role for role in org.roles.values() if role.name == name)


def test_the_stored_fixture_replays_to_the_known_state(organizations: Organizations) -> None:
    load_fixture(organizations)

    org = organizations.get_organization(ORG_ID)

    assert org.name == "Fixture Labs" and org.version == 23
    emails = {m.email: org.role_of(m).name for m in org.members.values()}
    assert emails == {"adam@example.com": "Owner", "olivia@example.com": "Admin", "dana@example.com": "Developer"}
    assert org.owner.user_id == "auth0|admin"
    assert sorted(role.name for role in org.roles.values()) == ["Admin", "Developer", "Owner", "QA", "Viewer"]
    qa = role_named(org, "QA")
    assert qa.permissions == {"manage:deployments", "view:deployments", "view:projects"}
    assert qa.description == "Tests and ships releases"
    assert role_named(org, "Owner").permissions == ALL_PERMISSIONS
    statuses = sorted(invitation.status for invitation in org.invitations.values())
    assert statuses == ["accepted", "accepted", "accepted", "cancelled", "pending"]
    assert list(org.pending_by_email) == ["pending@example.com"]
    (link,) = org.links.values()
    assert (link.deleted, link.use_count, link.max_uses) == (True, 1, 3)
    assert org.created_on == datetime(2026, 1, 5, 9, 1, tzinfo=UTC)


def test_the_e_mail_outcome_fixture_replays_to_the_known_state(organizations: Organizations) -> None:
    load_fixture(organizations, FIXTURES / "organization_events_v2.jsonl")

    org = organizations.get_organization(MAIL_ORG_ID)

    by_email = {i.email: i for i in org.invitations.values()}
    assert by_email["ann@mail.example"].email_status == "sent"  # sent again after the resend
    assert by_email["bounce@mail.example"].email_status == "failed"
    assert org.version == 8


def test_the_skipped_event_fixture_replays_and_changes_nothing_but_the_version(organizations: Organizations) -> None:
    load_fixture(organizations, FIXTURES / "organization_events_v3.jsonl")

    org = organizations.get_organization(PARKED_ORG_ID)

    assert (org.name, org.version, len(org.members)) == ("Parked Labs", 3, 1)
    events = organizations.repository.event_store.get(PARKED_ORG_ID)
    skipped = list(events)[-1]
    assert isinstance(skipped, Organization.EventSkipped)
    assert (skipped.projection, skipped.position, skipped.event_type, skipped.actor_id) == (
        "audit",
        42,
        "RoleCreated",
        "operator:alice",
    )


def test_the_renamed_and_deleted_organization_fixture_replays_deleted(organizations: Organizations) -> None:
    load_fixture(organizations, FIXTURES / "organization_events_v4.jsonl")

    org = organizations.get_organization(DELETED_ORG_ID)

    assert (org.name, org.version, org.deleted) == ("Renamed Labs", 5, True)
    (invitation,) = org.invitations.values()
    assert (invitation.email, invitation.status) == ("pat@deleted.example", "cancelled")
    renamed = list(organizations.repository.event_store.get(DELETED_ORG_ID))[3]
    assert isinstance(renamed, Organization.OrganizationRenamed) and renamed.old_name == "Deleted Labs"


def test_the_sealed_fixture_reads_placeholders_where_no_key_is_left(organizations: Organizations) -> None:
    """v5 holds personal data sealed per person (membership.personal_data) and Pat's erasure. This store has
    none of its keys, as if everyone in it was erased: each sealed value reads as its placeholder."""
    load_fixture(organizations, FIXTURES / "organization_events_v5.jsonl")

    org = organizations.get_organization(ERASURE_ORG_ID)

    assert (org.name, org.version) == ("Erasure Labs", 6)
    (owner,) = org.members.values()  # Pat, erased, is no longer a member
    assert owner.user_id == "auth0|owner5"
    assert re.fullmatch(r"erased-[0-9a-f]{8}@erased\.invalid", owner.email) and owner.name.startswith("erased member ")
    emails = {invitation.status: invitation.email for invitation in org.invitations.values()}
    assert emails["accepted"] == "erased-9338536e@erased.invalid"  # the pseudonym PersonErased names
    assert emails["pending"].endswith("@erased.invalid") and emails["pending"] != emails["accepted"]


def test_every_event_type_is_in_a_fixture() -> None:
    topics = {
        json.loads(line)["topic"]
        for fixture in FIXTURES.glob("organization_events_v*.jsonl")
        for line in fixture.read_text().splitlines()
    }
    event_topics = {
        value.TOPIC
        for value in vars(Organization).values()
        if isinstance(value, type) and issubclass(value, Organization.Event) and value is not Organization.Event
    }
    assert topics == event_topics


# -- the schema-evolution guard ----------------------------------------------------------------------------------------
class MemberLeftWithReason(Organization.MemberLeft):
    """MemberLeft as a careless change would make it: a field added without a default or an upcaster."""

    TOPIC = "tests:MemberLeftWithReason"
    reason: str


register_topic(MemberLeftWithReason.TOPIC, MemberLeftWithReason)


def stored_rows() -> list[dict[str, object]]:
    return [
        json.loads(line)
        for fixture in sorted(FIXTURES.glob("organization_events_v*.jsonl"))
        for line in fixture.read_text().splitlines()
    ]


def notification(n: int, row: dict[str, object], topic: str | None = None) -> Notification:
    return Notification(
        id=n, originator_id=UUID(str(row["originator_id"])), originator_version=int(str(row["originator_version"])),
        topic=topic or str(row["topic"]), state=str(row["state"]).encode(),
    )  # fmt: skip


def test_every_stored_event_decodes_with_every_field_its_class_declares(organizations: Organizations) -> None:
    decoder = ProjectionDecoder(organizations.mapper)
    for n, row in enumerate(stored_rows(), start=1):
        for event in (organizations.mapper.to_domain_event(notification(n, row)), decoder.decode(notification(n, row))):
            assert missing_fields(event) == [], (row["topic"], row["originator_version"])


def test_the_guard_names_a_required_field_added_without_an_upcaster(organizations: Organizations) -> None:
    left = next(row for row in stored_rows() if str(row["topic"]).endswith(".MemberLeft"))
    stored = notification(1, left, topic=MemberLeftWithReason.TOPIC)
    assert missing_fields(organizations.mapper.to_domain_event(stored)) == ["reason"]
    ((_, undecodable),) = ProjectionDecoder(organizations.mapper).batch([stored])
    assert isinstance(undecodable, UndecodableEvent) and isinstance(undecodable.error, MissingFieldsError)
    assert "MemberLeftWithReason lacks reason" in str(undecodable.error)


def test_the_stored_fixtures_run_through_every_read_model_and_the_audit_trail(services: Services) -> None:
    for fixture in sorted(FIXTURES.glob("organization_events_v*.jsonl")):
        load_fixture(services.organizations, fixture)
    services.runner.catch_up()

    assert table_rows(services, "SELECT COUNT(*) FROM {audit_log}") == [(len(stored_rows()),)]
    assert table_rows(services, "SELECT COUNT(*) FROM parked_events") == [(0,)]
    members = table_rows(services, "SELECT email FROM {members} WHERE organization_id = %s ORDER BY email", str(ORG_ID))
    assert members == [("adam@example.com",), ("dana@example.com",), ("olivia@example.com",)]
    assert (
        table_rows(services, "SELECT name FROM {organizations} WHERE organization_id = %s", str(DELETED_ORG_ID)) == []
    )
    held = table_rows(
        services, "SELECT COUNT(*) FROM {access_intervals} WHERE organization_id = %s AND to_position IS NULL",
        str(ORG_ID),
    )  # fmt: skip
    assert held == [(3,)]
