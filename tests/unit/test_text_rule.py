"""Every stored string obeys one rule, in the domain itself: nothing can store a control character."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from membership import Actor, Organization
from membership import exceptions as err
from membership.text import BIDI_CONTROLS, check_text, text_problem

NOW = datetime(2026, 11, 28, tzinfo=UTC)
OWNER = Actor("owner-1", "owner@example.com", "Owner")
HOSTILE = ["A\x00B", "A\nB", "A\rB", "A\tB", "A\x1bB", "A\x7fB", "A\x85B", "A\u202eB", "A\u2067B", "x\udfffy"]


def refused(value: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") or c in BIDI_CONTROLS for c in value)


@given(st.text())
def test_the_rule_refuses_exactly_control_characters_surrogates_and_bidi_controls(value: str) -> None:
    assert (text_problem(value) is not None) == refused(value)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"])))
def test_accepted_text_is_returned_unchanged(value: str) -> None:
    if not refused(value):
        assert check_text(value, "name") == value


def org() -> Organization:
    created = Organization.create(uuid4(), "Acme", OWNER, uuid4(), NOW)
    created.collect_events()
    return created


@pytest.mark.parametrize("value", HOSTILE)
def test_no_organization_is_created_with_such_a_name(value: str) -> None:
    with pytest.raises(err.InvalidValueError) as refusal:
        Organization.create(uuid4(), value, OWNER, uuid4(), NOW)
    assert refusal.value.field == "name"


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("field", ["name", "description"])
def test_no_role_is_created_or_renamed_with_such_text(value: str, field: str) -> None:
    team = org()
    text = {"name": "QA", "description": "", field: value}
    with pytest.raises(err.InvalidValueError) as refusal:
        team.create_role(OWNER, uuid4(), text["name"], text["description"], [], NOW)
    assert refusal.value.field == field
    role = uuid4()
    team.create_role(OWNER, role, "Fine", "", [], NOW)
    team.collect_events()
    with pytest.raises(err.InvalidValueError):
        team.update_role(OWNER, role, NOW, **{field: value})
    assert team.collect_events() == []


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("claim", ["user_id", "email", "name"])
def test_no_event_records_an_actor_whose_identity_holds_such_text(value: str, claim: str) -> None:
    actor = Actor(**{"user_id": "u-1", "email": "u@example.com", "name": "U", claim: value})
    with pytest.raises(err.InvalidValueError):
        Organization.create(uuid4(), "Acme", actor, uuid4(), NOW)


def test_a_user_id_longer_than_255_characters_is_refused() -> None:
    with pytest.raises(err.InvalidValueError) as refusal:
        Organization.create(uuid4(), "Acme", Actor("u" * 256, "u@example.com"), uuid4(), NOW)
    assert refusal.value.field == "sub"


def test_an_owner_needs_a_deliverable_email() -> None:
    with pytest.raises(err.InvalidValueError) as refusal:
        Organization.create(uuid4(), "Acme", Actor("u-1", ""), uuid4(), NOW)
    assert refusal.value.field == "email"


@pytest.mark.parametrize("value", HOSTILE)
def test_an_operators_reason_for_skipping_obeys_the_rule_too(value: str) -> None:
    team = org()
    with pytest.raises(err.InvalidValueError):
        team.record_event_skipped(Actor("operator:ann", "", "ann"), "audit", 7, "RoleCreated", value, NOW)
    assert team.collect_events() == []
