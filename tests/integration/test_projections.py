"""Each read model, on SQLite and PostgreSQL, after a scripted history."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from membership import Actor
from projections.engine import parking, store, tracking
from projections.engine.catalog import fingerprints
from projections.engine.runner import ProjectionRunner
from projections.engine.store import ReadModelLaggingError
from projections.invitations import InvitationsProjection
from projections.roles import RolesProjection
from service.bootstrap import Services
from tests.factories import new_actor
from tests.helpers import assert_each_invite_visible_when_its_wait_returns, member_id, role_id, table_rows


class History:
    """A small team's story, told through the application; projections applied after."""

    def __init__(self, services: Services) -> None:
        app = self.app = services.organizations
        self.owner, self.ann, self.dee = new_actor("owner"), new_actor("ann"), new_actor("dee")
        self.org = app.create_organization(self.owner, "Acme").organization_id
        developer, viewer = role_id(app, self.org, "Developer"), role_id(app, self.org, "Viewer")
        app.accept_invitation(self.ann, app.invite_member(self.org, self.owner, self.ann.email, developer).secret)
        self.bob_invitation = app.invite_member(self.org, self.owner, "Bob@Example.com", viewer, 3).id
        carl = app.invite_member(self.org, self.owner, "carl@example.com", viewer).id
        app.cancel_invitation(self.org, self.owner, carl)
        self.qa = app.create_role(self.org, self.owner, "QA", "Tests", ["manage:deployments"]).id
        link = app.create_invite_link(self.org, self.owner, self.qa, max_uses=2)
        self.link = link.id
        app.accept_invite_link(self.dee, link.secret)
        app.change_role(self.org, self.owner, member_id(app, self.org, self.dee), viewer)
        app.remove_member(self.org, self.owner, member_id(app, self.org, self.ann))
        services.runner.catch_up()


@pytest.fixture
def history(services: Services) -> History:
    return History(services)


def test_members_lists_current_members_with_roles(services: Services, history: History) -> None:
    rows = table_rows(
        services,
        "SELECT m.email, m.name, r.name FROM {members} m JOIN {roles} r ON r.role_id = m.role_id"
        " WHERE m.organization_id = %s ORDER BY m.joined_at",
        str(history.org),
    )
    assert rows == [(history.owner.email, "Owner", "Owner"), (history.dee.email, "Dee", "Viewer")]
    (org_row,) = table_rows(services, "SELECT name FROM {organizations} WHERE organization_id = %s", str(history.org))
    assert org_row == ("Acme",)


def test_roles_lists_system_and_custom_roles(services: Services, history: History) -> None:
    rows = table_rows(
        services,
        "SELECT name, is_system, permissions FROM {roles} WHERE organization_id = %s ORDER BY name",
        str(history.org),
    )
    assert [(name, system) for name, system, _ in rows] == [
        ("Admin", 1),
        ("Developer", 1),
        ("Owner", 1),
        ("QA", 0),
        ("Viewer", 1),
    ]
    assert dict((n, p) for n, _, p in rows)["QA"] == "manage:deployments view:deployments"


def test_invitations_keep_every_status(services: Services, history: History) -> None:
    rows = table_rows(
        services,
        "SELECT email, status, invited_by_email FROM {invitations} WHERE organization_id = %s ORDER BY email",
        str(history.org),
    )
    assert rows == [
        (history.ann.email, "accepted", history.owner.email),
        ("bob@example.com", "pending", history.owner.email),
        ("carl@example.com", "cancelled", history.owner.email),
    ]
    ((created, expires),) = table_rows(
        services,
        "SELECT created_at, expires_at FROM {invitations} WHERE invitation_id = %s",
        str(history.bob_invitation),
    )
    db = services.read_db
    assert db.from_db_time(expires) - db.from_db_time(created) == timedelta(days=3)


def test_invite_links_count_uses_and_hold_no_code(services: Services, history: History) -> None:
    rows = table_rows(services, "SELECT * FROM {invite_links} WHERE organization_id = %s", str(history.org))
    assert len(rows) == 1
    (use_count, max_uses, deleted_at) = table_rows(
        services, "SELECT use_count, max_uses, deleted_at FROM {invite_links} WHERE link_id = %s", str(history.link)
    )[0]
    assert (use_count, max_uses, deleted_at) == (1, 2, None)
    code = history.app.invite_link_code(history.org, history.link)
    assert code not in repr(rows)


def test_the_audit_log_has_one_readable_row_per_event(services: Services, history: History) -> None:
    rows = table_rows(
        services,
        "SELECT event_type, actor_email, target_type, target_label, details FROM {audit_log}"
        " WHERE organization_id = %s ORDER BY position",
        str(history.org),
    )
    assert [r[0] for r in rows] == [
        "Created", "MemberJoined", "MemberInvited", "InviteAccepted", "MemberInvited", "MemberInvited",
        "InvitationCancelled", "RoleCreated", "InviteLinkCreated", "MemberJoinedByLink", "RoleChanged",
        "MemberRemoved",
    ]  # fmt: skip
    accepted, removed, role_changed = rows[3], rows[-1], rows[-2]
    assert accepted[1:4] == (history.ann.email, "member", history.ann.email)
    assert removed[1:4] == (history.owner.email, "member", history.ann.email)  # label kept after removal
    assert json.loads(role_changed[4])["role"] == "Viewer"
    assert json.loads(role_changed[4])["oldRole"] == "QA"
    assert rows[8][3] == "invite link for QA"


def test_the_audit_log_holds_no_token_or_code(services: Services, history: History) -> None:
    app = history.app
    secrets = [
        app.invitation_token(history.org, history.bob_invitation),
        app.invite_link_code(history.org, history.link),
    ]
    dump = repr(table_rows(services, "SELECT * FROM {audit_log}")) + repr(
        table_rows(services, "SELECT * FROM {audit_labels}")
    )
    assert all(secret not in dump for secret in secrets)
    with app.reading(history.org) as org:
        nonces = [
            org.get_invitation(history.bob_invitation).token_nonce,
            org.get_invite_link(history.link).code_nonce,
        ]
    assert all(nonce not in dump for nonce in nonces)


def test_deleting_an_organization_drops_its_rows_even_those_of_the_same_batch(services: Services) -> None:
    app = services.organizations
    owner = new_actor("owner")
    kept = app.create_organization(owner, "Kept").organization_id
    services.runner.catch_up()  # Kept's rows were written by an earlier batch; the doomed one's are all in one
    doomed = app.create_organization(owner, "Doomed").organization_id
    link = app.create_invite_link(doomed, owner, role_id(app, doomed, "Viewer"))
    app.accept_invite_link(new_actor("ann"), link.secret)
    app.invite_member(doomed, owner, "bob@example.com", role_id(app, doomed, "Viewer"))
    app.delete_organization(doomed, owner)
    services.runner.catch_up()

    for table in ("organizations", "members", "roles", "invitations", "invite_links"):
        assert table_rows(services, f"SELECT * FROM {{{table}}} WHERE organization_id = %s", str(doomed)) == []
    assert len(table_rows(services, "SELECT * FROM {members} WHERE organization_id = %s", str(kept))) == 1
    assert len(table_rows(services, "SELECT * FROM {roles} WHERE organization_id = %s", str(kept))) == 4
    audited = table_rows(
        services, "SELECT event_type FROM {audit_log} WHERE organization_id = %s ORDER BY position", str(doomed)
    )
    assert audited[-1] == ("OrganizationDeleted",)


def test_every_projection_reaches_the_latest_position(services: Services, history: History) -> None:
    latest = services.organizations.recorder.max_notification_id()
    assert {s.name: s.position for s in store.status(services.read_db, latest)} == {
        "access": latest,
        "audit": latest,
        "invitations": latest,
        "jobs": latest,
        "members": latest,
        "roles": latest,
    }


def test_two_runners_at_once_apply_every_event_exactly_once(services: Services) -> None:
    app, owner = services.organizations, new_actor("owner")
    other = ProjectionRunner(app, services.read_db, batch_size=3)  # like a second worker process
    services.runner.start()
    other.start()
    try:
        org = app.create_organization(owner, "Busy").organization_id
        for n in range(40):
            receipt = app.invite_member(org, owner, f"p{n}@example.com", role_id(app, org, "Viewer"))
        store.wait_for(services.read_db, receipt.position, timeout=10)
    finally:
        other.stop()
    events = table_rows(
        services, "SELECT COUNT(*), COUNT(DISTINCT position) FROM {audit_log} WHERE organization_id = %s", str(org)
    )
    assert events == [(42, 42)]
    assert table_rows(services, "SELECT COUNT(*) FROM {invitations} WHERE organization_id = %s", str(org)) == [(40,)]
    assert not services.runner.broken and not other.broken
    assert parking.active(services.read_db) == []


def test_a_projection_whose_table_is_gone_says_so_and_is_retried_while_the_others_go_on(
    services: Services, history: History
) -> None:
    app, db = history.app, services.read_db
    with db.transaction() as cursor:
        cursor.execute("DROP TABLE invitations_g1")  # an operator mistake: every event would fail alike
    app.invite_member(history.org, history.owner, "late@example.com", role_id(app, history.org, "Viewer"))
    services.runner.catch_up()
    latest = app.recorder.max_notification_id()
    status = {s.name: s for s in store.status(db, latest)}
    assert status["invitations"].lag == 1 and status["invitations"].stalled
    assert "invitations_g1" in (status["invitations"].error or "")
    assert status["members"].lag == status["audit"].lag == 0
    assert parking.active(db) == []  # a broken table is nobody's event: nothing is parked
    assert "invitations" in services.runner.broken
    with pytest.raises(ReadModelLaggingError, match="invitations"):
        store.wait_for(db, latest, timeout=0.5)

    with db.transaction() as cursor:  # the operator puts the table back; the next try applies the event
        InvitationsProjection(1).create_tables(db, cursor)
    services.runner.broken["invitations"] = replace(services.runner.broken["invitations"], retry_at=0)
    services.runner.catch_up()
    store.wait_for(db, latest, timeout=1)
    assert not services.runner.broken
    assert {s.name: s.error for s in store.status(db, latest)}["invitations"] is None


def test_a_generation_made_active_behind_where_the_runner_got_is_filled_from_its_own_position(
    services: Services, history: History
) -> None:
    """The runner starts each batch where the last one left every read model; one made active meanwhile
    that has not seen those events (an operator's switch to an empty copy) must not skip them."""
    app, db = history.app, services.read_db
    with db.transaction() as cursor:
        tracking.set_state(db, cursor, "roles", 1, tracking.RETIRED)
        RolesProjection(2).create_tables(db, cursor)
        tracking.insert_generation(db, cursor, "roles", 2, tracking.ACTIVE, fingerprints("roles"))
    app.create_role(history.org, history.owner, "Ops", "Runs things", ["manage:deployments"])
    services.runner.catch_up()
    names = table_rows(services, "SELECT name FROM {roles} WHERE organization_id = %s ORDER BY name", str(history.org))
    assert [name for (name,) in names] == ["Admin", "Developer", "Ops", "Owner", "QA", "Viewer"]


def test_waiting_for_a_position_nobody_has_reached_times_out(services: Services, history: History) -> None:
    latest = services.organizations.recorder.max_notification_id()
    store.wait_for(services.read_db, latest, timeout=0.1)
    with pytest.raises(ReadModelLaggingError, match="have not reached"):
        store.wait_for(services.read_db, latest + 1, timeout=0.05)


def test_a_running_runner_makes_each_command_visible_before_the_wait_returns(services: Services) -> None:
    services.runner.start()
    assert_each_invite_visible_when_its_wait_returns(services.organizations, services, 20)


def test_joining_by_link_cancels_a_pending_invitation(services: Services, history: History) -> None:
    app = history.app
    bob = Actor(new_actor("bob").user_id, "bob@example.com", "Bob")
    code = app.create_invite_link(history.org, history.owner, role_id(app, history.org, "Viewer")).secret
    app.accept_invite_link(bob, code)
    services.runner.catch_up()
    rows = table_rows(
        services, "SELECT status FROM {invitations} WHERE invitation_id = %s", str(history.bob_invitation)
    )
    assert rows == [("cancelled",)]
