"""The application on the real stores: SQLite and PostgreSQL run the same cases."""

from __future__ import annotations

from collections.abc import Callable

from membership import Organizations
from membership.application import project_organization
from tests.factories import new_actor
from tests.helpers import join, member_id, role_id


def test_a_whole_team_lifecycle_is_stored_and_reloaded(make_organizations: Callable[..., Organizations]) -> None:
    app = make_organizations()
    owner = new_actor("owner")
    org_id = app.create_organization(owner, "Acme").organization_id
    admin = join(app, org_id, owner, "Admin", "admin")
    developer = join(app, org_id, admin, "Developer", "dev")
    # A custom role, granted through an invite link.
    support = app.create_role(org_id, admin, "Support", "Helps customers", ["manage:members"]).id
    assert support is not None
    link = app.create_invite_link(org_id, admin, support, max_uses=2)
    assert link.secret is not None
    joiner = new_actor("joiner")
    app.accept_invite_link(joiner, link.secret)
    # Role change, removal, leaving and transfer.
    app.change_role(org_id, admin, member_id(app, org_id, developer), role_id(app, org_id, "Viewer"))
    app.remove_member(org_id, admin, member_id(app, org_id, joiner))
    app.leave(org_id, developer)
    app.transfer_ownership(org_id, owner, member_id(app, org_id, admin))

    reloaded = make_organizations().get_organization(org_id)  # another process: nothing cached

    assert reloaded == app.get_organization(org_id)
    assert reloaded.owner.user_id == admin.user_id
    former_owner = reloaded.member_for_user(owner.user_id)
    assert former_owner is not None and former_owner.role_id == role_id(app, org_id, "Admin")
    assert set(reloaded.member_by_user) == {owner.user_id, admin.user_id}
    assert reloaded.get_invite_link(link.id).use_count == 1  # type: ignore[arg-type]


def test_positions_increase_with_every_command(organizations: Organizations) -> None:
    owner = new_actor("owner")
    created = organizations.create_organization(owner, "Acme")
    invited = organizations.invite_member(
        created.organization_id, owner, "a@example.com", role_id(organizations, created.organization_id, "Viewer")
    )
    assert created.position is not None and invited.position is not None
    assert invited.position > created.position
    assert organizations.recorder.max_notification_id() == invited.position


def test_a_command_that_changes_nothing_stores_nothing(organizations: Organizations) -> None:
    owner = new_actor("owner")
    org_id = organizations.create_organization(owner, "Acme").organization_id
    admin = join(organizations, org_id, owner, "Admin")
    before = organizations.recorder.max_notification_id()
    receipt = organizations.change_role(
        org_id, owner, member_id(organizations, org_id, admin), role_id(organizations, org_id, "Admin")
    )
    assert receipt.position is None
    assert organizations.recorder.max_notification_id() == before


def test_loading_from_a_snapshot_equals_replaying_every_event(make_organizations: Callable[..., Organizations]) -> None:
    app = make_organizations(snapshot_interval=4, snapshot_in_commands=True)
    owner = new_actor("owner")
    org_id = app.create_organization(owner, "Acme").organization_id
    for _ in range(6):
        join(app, org_id, owner, "Developer")

    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(org_id))
    from_snapshot = make_organizations(snapshot_interval=4).get_organization(org_id)
    from_events = project_organization(None, app.events.get(org_id))

    assert [s.originator_version for s in snapshots] == [4, 8, 12]
    assert from_snapshot == from_events == app.get_organization(org_id)


def test_another_process_sees_every_write(make_organizations: Callable[..., Organizations]) -> None:
    first, second = make_organizations(), make_organizations()
    owner = new_actor("owner")
    org_id = first.create_organization(owner, "Acme").organization_id
    viewer = role_id(first, org_id, "Viewer")
    second.invite_member(org_id, owner, "from-second@example.com", viewer)  # second caches the org
    first.invite_member(org_id, owner, "from-first@example.com", viewer)
    second.invite_member(org_id, owner, "from-second-again@example.com", viewer)  # fast-forwards first's write

    emails = set(make_organizations().get_organization(org_id).pending_by_email)
    assert emails == {"from-second@example.com", "from-first@example.com", "from-second-again@example.com"}
