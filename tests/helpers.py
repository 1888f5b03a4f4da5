"""Small builders shared by the store and concurrency tests: unique data per test."""

from __future__ import annotations

from uuid import UUID, uuid4

from membership import Actor, Organization, Organizations
from projections.engine.sql import ReadDatabase
from service.bootstrap import Services
from tests.factories import new_actor


def role_id(app: Organizations, organization_id: UUID, name: str) -> UUID:
    with app.reading(organization_id) as org:
        return next(role.id for role in org.roles.values() if role.name == name)


def member_id(app: Organizations, organization_id: UUID, actor: Actor) -> UUID:
    with app.reading(organization_id) as org:
        return UUID(org.member_by_user[actor.user_id])


def join(app: Organizations, organization_id: UUID, inviter: Actor, role: str, name: str = "member") -> Actor:
    """A new member with the named role, by invitation and acceptance."""
    user = new_actor(name)
    receipt = app.invite_member(organization_id, inviter, user.email, role_id(app, organization_id, role))
    assert receipt.secret is not None
    app.accept_invitation(user, receipt.secret)
    return user


def assert_invariants(app: Organizations, organization_id: UUID) -> None:
    """What must hold after any history, checked against a fresh replay of the store."""
    from membership.application import project_organization

    org = project_organization(None, app.events.get(organization_id))
    assert org is not None
    owners = [m for m, member in org.members.items() if member.role_id == org.owner_role_id]
    assert owners == [org.owner_member_id]
    assert not set(org.member_by_email) & set(org.pending_by_email)
    assert all(not link.max_uses or link.use_count <= link.max_uses for link in org.links.values())
    assert all(str(member.role_id) in org.roles for member in org.members.values())
    assert org == app.get_organization(organization_id)


def table_rows(services: Services, statement: str, *params: object) -> list[tuple[object, ...]]:
    """Rows of a query over the active read-model tables ({members}, {audit_log}...)."""
    from projections.engine.reading import read

    with read(services.read_db) as tables:
        return [tuple(row) for row in tables.fetch(statement, *params)]


def generation_rows(services: Services, name: str, generation: int) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of one generation of a projection, sorted."""
    from projections.engine.catalog import PROJECTIONS

    rows = {}
    with services.read_db.snapshot() as cursor:
        for logical, table in PROJECTIONS[name](generation).table_names.items():
            cursor.execute(f"SELECT * FROM {table}")
            rows[logical] = sorted((tuple(row) for row in cursor.fetchall()), key=repr)
    return rows


def joined_at_once(app: Organizations, organization_id: UUID, owner: Actor, people: list[Actor]) -> tuple[list[UUID], int]:
    """`people` joined by one Viewer link, saved in one transaction (a command each takes seconds for hundreds);
    returns their member ids and the last position."""
    link_id = app.create_invite_link(organization_id, owner, role_id(app, organization_id, "Viewer")).id
    assert link_id is not None
    org: Organization = app.repository.get(organization_id)
    member_ids = [uuid4() for _ in people]
    for person, new_member_id in zip(people, member_ids, strict=True):
        org.redeem_invite_link(person, link_id, new_member_id, app.clock())
    return member_ids, app.save(org)[-1].notification.id


def busy_team(services: Services, size: int = 12) -> None:
    """An organization with a custom role, people who joined by link, role changes, removals, a cancelled invitation."""
    app, owner = services.organizations, new_actor("owner")
    org = app.create_organization(owner, "Busy").organization_id
    qa = app.create_role(org, owner, "QA", "", ["view:projects"]).id
    code = app.create_invite_link(org, owner, qa).secret
    people = [new_actor("p") for _ in range(size)]
    for person in people:
        app.accept_invite_link(person, code)
    for person in people[::3]:
        app.change_role(org, owner, member_id(app, org, person), role_id(app, org, "Developer"))
    for person in people[1::4]:
        app.remove_member(org, owner, member_id(app, org, person))
    app.update_role(org, owner, qa, name="Quality")
    app.cancel_invitation(org, owner, app.invite_member(org, owner, "x@example.com", qa).id)


def refuse_member_rows(db: ReadDatabase, email: str) -> None:
    """A stand-in for a read-model bug that only some rows meet: members_g1 refuses this e-mail."""
    with db.transaction() as cursor:
        if db.is_sqlite:
            cursor.execute(
                f"CREATE TRIGGER refuse_poison BEFORE INSERT ON members_g1 WHEN NEW.email = '{email}'"
                " BEGIN SELECT RAISE(ABORT, 'a read-model bug met this row'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF NEW.email = '{email}' THEN RAISE EXCEPTION 'a read-model bug met this row'; END IF;"
                " RETURN NEW; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON members_g1 FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
            )


def fix_the_bug(db: ReadDatabase) -> None:
    with db.transaction() as cursor:
        cursor.execute("DROP TRIGGER refuse_poison" + ("" if db.is_sqlite else " ON members_g1"))


def assert_each_invite_visible_when_its_wait_returns(app: Organizations, reader: Services, count: int) -> None:
    """Invitations made one at a time through `app`: each shows in `reader`'s read models as soon as
    `wait_for` on `reader` returns for it (read-your-writes)."""
    from projections.engine.store import wait_for

    owner = new_actor("owner")
    org = app.create_organization(owner, "Live").organization_id
    for n in range(count):
        receipt = app.invite_member(org, owner, f"p{n}@example.com", role_id(app, org, "Viewer"))
        wait_for(reader.read_db, receipt.position, timeout=5)
        visible = table_rows(reader, "SELECT COUNT(*) FROM {invitations} WHERE organization_id = %s", str(org))
        assert visible == [(n + 1,)]
