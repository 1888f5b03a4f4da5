"""Admins racing on one organization from several application instances (like processes).

Each instance has its own cache; conflicts surface as optimistic-concurrency
errors in the store and are retried, so nothing is lost and no rule is broken.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from membership import Organizations
from membership.exceptions import InviteLinkUsedUpError, MembershipError
from service.bootstrap import build_services
from service.settings import Settings
from tests.factories import new_actor
from tests.helpers import assert_invariants, join, member_id, role_id

INSTANCES = 3
THREADS = 8


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Runs every call at once (released together by a barrier); returns results or exceptions."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except MembershipError as error:
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture
def instances(make_organizations: Callable[..., Organizations]) -> list[Organizations]:
    return [make_organizations() for _ in range(INSTANCES)]


def test_racing_redemptions_never_exceed_max_uses(instances: list[Organizations]) -> None:
    app = instances[0]
    owner = new_actor("owner")
    org_id = app.create_organization(owner, "Acme").organization_id
    code = app.create_invite_link(org_id, owner, role_id(app, org_id, "Viewer"), max_uses=5).secret
    assert code is not None
    users = [new_actor("joiner") for _ in range(16)]

    results = race([lambda u=u, i=i: instances[i % INSTANCES].accept_invite_link(u, code) for i, u in enumerate(users)])

    joined = [r for r in results if not isinstance(r, Exception)]
    assert len(joined) == 5
    assert all(isinstance(r, InviteLinkUsedUpError) for r in results if isinstance(r, Exception))
    assert len(app.get_organization(org_id).members) == 1 + 5
    assert_invariants(app, org_id)


def test_two_admins_inviting_at_once_lose_nothing(instances: list[Organizations]) -> None:
    app = instances[0]
    owner = new_actor("owner")
    org_id = app.create_organization(owner, "Acme").organization_id
    admins = [join(app, org_id, owner, "Admin", "admin") for _ in range(2)]
    viewer = role_id(app, org_id, "Viewer")
    emails = [f"invitee-{n}@example.com" for n in range(2 * THREADS)]

    results = race(
        [
            lambda n=n, e=e: instances[n % INSTANCES].invite_member(org_id, admins[n % 2], e, viewer)
            for n, e in enumerate(emails)
        ]
    )

    assert not [r for r in results if isinstance(r, Exception)]
    assert set(app.get_organization(org_id).pending_by_email) == set(emails)
    assert_invariants(app, org_id)


def test_racing_role_changes_keep_every_rule(instances: list[Organizations]) -> None:
    app = instances[0]
    owner = new_actor("owner")
    org_id = app.create_organization(owner, "Acme").organization_id
    admin = join(app, org_id, owner, "Admin", "admin")
    members = [join(app, org_id, owner, "Viewer") for _ in range(4)]
    roles = [role_id(app, org_id, name) for name in ("Developer", "Viewer", "Admin")]
    targets = [member_id(app, org_id, m) for m in members] + [member_id(app, org_id, owner)]

    calls = [
        lambda n=n: instances[n % INSTANCES].change_role(
            org_id, (owner, admin)[n % 2], targets[n % len(targets)], roles[n % len(roles)]
        )
        for n in range(3 * THREADS)
    ]
    calls.append(lambda: instances[1].transfer_ownership(org_id, owner, member_id(app, org_id, admin)))
    results = race(calls)

    changed = [r for r in results if not isinstance(r, Exception) and r.position is not None]
    org = app.get_organization(org_id)
    # Every accepted change is stored: the versions add up with nothing lost.
    expected_version = 2 + 2 * 5 + len(changed)
    assert org.version == expected_version
    assert_invariants(app, org_id)


def test_processes_sharing_the_organization_lock_queue_instead_of_conflicting(
    store: str, settings_for: Callable[..., Settings]
) -> None:
    """As the server wires them (service.bootstrap): on PostgreSQL an organization's commands from several
    processes take turns, so none is decided twice; SQLite serialises its writers by itself."""
    processes = [build_services(settings_for(store)) for _ in range(INSTANCES)]
    try:
        apps = [services.organizations for services in processes]
        owner = new_actor("owner")
        org_id = apps[0].create_organization(owner, "Acme").organization_id
        viewer = role_id(apps[0], org_id, "Viewer")
        emails = [f"invitee-{n}@example.com" for n in range(2 * THREADS)]

        results = race(
            [lambda n=n, e=e: apps[n % INSTANCES].invite_member(org_id, owner, e, viewer) for n, e in enumerate(emails)]
        )

        assert not [r for r in results if isinstance(r, Exception)]
        assert set(apps[1].get_organization(org_id).pending_by_email) == set(emails)
        if not processes[0].read_db.is_sqlite:
            assert sum(app.conflicts_retried for app in apps) == 0
    finally:
        for services in processes:
            services.close()


def test_commands_saved_together_each_get_their_own_answer(instances: list[Organizations]) -> None:
    """Many commands on one organization in one process are decided and saved in groups (membership.combining):
    each caller still gets the position of its own event, and a refused command fails alone."""
    app = instances[0]
    owner = new_actor("owner")
    org_id = app.create_organization(owner, "Acme").organization_id
    viewer = role_id(app, org_id, "Viewer")
    emails = [f"group-{n}@example.com" for n in range(12)] + ["twice@example.com"] * 4

    results = race([lambda e=e: app.invite_member(org_id, owner, e, viewer) for e in emails])

    receipts = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(receipts) == 13 and len(refused) == 3
    assert all(type(error).__name__ == "AlreadyInvitedError" for error in refused), refused
    assert len({r.position for r in receipts}) == 13
    for receipt in receipts:
        (notification,) = app.recorder.select_notifications(start=receipt.position, limit=1)
        event = app.mapper.to_domain_event(notification)
        assert (type(event).__name__, event.invitation_id) == ("MemberInvited", receipt.id)
    assert set(app.get_organization(org_id).pending_by_email) == set(emails)
    assert_invariants(app, org_id)
