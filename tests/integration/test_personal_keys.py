"""The key store in a process that did not write the events: the keys a replay needs are unwrapped together
before decoding, and only a bounded number kept, on both stores."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import pytest

from membership import personal_data
from service.bootstrap import build_services
from service.settings import Settings
from tests.factories import new_actor
from tests.helpers import role_id


def crowd(settings: Settings, people: int) -> tuple[UUID, list[str]]:
    """An organization `people` joined by link, written by another process; its id and the people's addresses."""
    services = build_services(settings)
    try:
        app, owner = services.organizations, new_actor("owner")
        org = app.create_organization(owner, "Crowd").organization_id
        link = app.create_invite_link(org, owner, role_id(app, org, "Viewer")).secret or ""
        joiners = [new_actor(f"p{n}") for n in range(people)]
        for person in joiners:
            app.accept_invite_link(person, link)
        return org, [p.email for p in joiners]
    finally:
        services.close()


def joined_by_link(events: object) -> list[str]:
    return [e.email for e in events if type(e).__name__ == "MemberJoinedByLink"]  # type: ignore[attr-defined]


def test_a_replay_unwraps_the_keys_of_everyone_its_events_name_before_decoding_any(
    store: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(store)
    org, addresses = crowd(settings, 30)
    fresh = build_services(settings)
    try:
        keys = fresh.organizations.personal_keys
        assert keys is not None
        key_ids = [key.pseudonym for address in addresses for key in keys.find(email=address)]
        assert len(key_ids) == 30 and not any(keys.holds(key_id) for key_id in key_ids)

        events = fresh.organizations.events.get(org)  # read, not decoded yet (a lazy map)
        assert all(keys.holds(key_id) for key_id in key_ids)
        assert joined_by_link(events) == addresses
    finally:
        fresh.close()


def test_keys_forgotten_past_the_limit_are_read_again_and_an_erased_one_stays_erased(
    store: str, settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(personal_data, "CIPHERS_KEPT", 8)
    settings = settings_for(store)
    org, addresses = crowd(settings, 20)
    fresh = build_services(settings)
    try:
        fresh.erase_person("dpo", email_address=addresses[0])
        for _ in range(3):  # 20 people, 8 keys kept: every replay forgets and unwraps again
            joined = joined_by_link(fresh.organizations.events.get(org))
            assert joined[1:] == addresses[1:] and joined[0].endswith("@erased.invalid")
            members = {m.email for m in fresh.organizations.organization_at(org, 23).members.values()}
            assert set(addresses[1:]) <= members and addresses[0] not in members
    finally:
        fresh.close()
