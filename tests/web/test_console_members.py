"""Settings > Members over HTTP: the list, and per member only the actions the signed-in person may take,
each of which the domain would refuse anyway (forged posts are refused in words, nothing changes)."""

from __future__ import annotations

from uuid import UUID

from membership import Actor
from membership.organization import system_role_id
from tests.factories import new_actor
from tests.web.conftest import Site, heading


def dev(actor: Actor) -> Actor:
    """The user the development sign-in makes of this person."""
    return Actor(f"dev:{actor.email}", actor.email, actor.name)


def owned_organization(site: Site, owner: Actor, name: str = "Acme") -> UUID:
    site.sign_in(owner)
    return site.organization(dev(owner), name)


def joined(site: Site, org: UUID, owner: Actor, role: str = "viewer", label: str = "member") -> Actor:
    person = new_actor(label)
    receipt = site.invite(org, dev(owner), person.email, role)
    site.caught_up(site.services.organizations.accept_invitation(dev(person), receipt.secret or ""))
    return person


def member_id(site: Site, org: UUID, person: Actor) -> str:
    with site.services.organizations.reading(org) as organization:
        return organization.member_by_user[dev(person).user_id]


def role_of(site: Site, org: UUID, person: Actor) -> str:
    with site.services.organizations.reading(org) as organization:
        member = organization.member_for_user(dev(person).user_id)
        assert member is not None
        return organization.role_of(member).name


def test_the_home_page_leads_to_the_members_page_and_signing_in_comes_first(site: Site) -> None:
    assert site.get("/").headers["Location"] == "/settings/members"
    answer = site.get("/settings/members")
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/auth/login?next=")


def test_someone_in_no_organization_may_create_one_and_becomes_its_owner(site: Site) -> None:
    olga = new_actor("olga")
    site.sign_in(olga)
    page = site.get("/settings/members")
    assert heading(page) == "You are not in any organization yet"
    created = site.post("/settings/organizations", {"name": "Olga's <b>Team</b>"})
    assert created.status_code == 303
    members = site.get("/settings/members")
    html = members.get_data(as_text=True)
    assert heading(members) == "Members" and "Olga&#39;s &lt;b&gt;Team&lt;/b&gt;" in html and "<b>Team" not in html
    assert "The organization was created." in html and "You are Owner." in html and olga.email in html


def test_the_owner_sees_every_action_and_a_viewer_sees_none(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    viewer = joined(site, org, owner, "viewer", "viewer")
    html = site.get("/settings/members").get_data(as_text=True)
    target = member_id(site, org, viewer)
    for action in (f"/settings/members/{target}/role", f"/settings/members/{target}/remove",
                   f"/settings/members/{target}/transfer-ownership"):  # fmt: skip
        assert action in html, action
    site.post("/auth/logout", {})
    site.sign_in(viewer)
    as_viewer = site.get("/settings/members").get_data(as_text=True)
    assert "Change role" not in as_viewer and "/remove" not in as_viewer and "transfer-ownership" not in as_viewer
    assert "Leave organization" in as_viewer
    owner_id = member_id(site, org, owner)
    forged = site.post(f"/settings/members/{owner_id}/remove", {})
    assert forged.status_code == 303
    assert "permission" in site.get("/settings/members").get_data(as_text=True).lower()
    assert role_of(site, org, owner) == "Owner"


def test_changing_a_role_shows_on_the_next_page_and_only_grantable_roles_are_offered(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    dana = joined(site, org, owner, "viewer", "dana")
    page = site.get("/settings/members").get_data(as_text=True)
    owner_role = str(system_role_id(org, "owner"))
    assert f'value="{owner_role}"' not in page.split("<table")[1].split("</table>")[0].split("role_id")[1]
    changed = site.post(f"/settings/members/{member_id(site, org, dana)}/role", {"role_id": str(system_role_id(org, "admin"))})
    assert changed.status_code == 303 and role_of(site, org, dana) == "Admin"
    assert "The member&#39;s role was changed." in site.get("/settings/members").get_data(as_text=True)


def test_removing_asks_first_and_then_removes(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    eve = joined(site, org, owner, "developer", "eve")
    target = member_id(site, org, eve)
    confirm = site.get(f"/settings/members/{target}/remove")
    assert heading(confirm).startswith("Remove") and "loses access" in confirm.get_data(as_text=True)
    assert site.post(f"/settings/members/{target}/remove", {}).status_code == 303
    with site.services.organizations.reading(org) as organization:
        assert dev(eve).user_id not in organization.member_by_user


def test_transferring_ownership_names_the_consequences_and_the_old_owner_becomes_admin(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    fay = joined(site, org, owner, "admin", "fay")
    target = member_id(site, org, fay)
    confirm = site.get(f"/settings/members/{target}/transfer-ownership").get_data(as_text=True)
    assert "You become an Admin" in confirm
    site.post(f"/settings/members/{target}/transfer-ownership", {})
    assert (role_of(site, org, fay), role_of(site, org, owner)) == ("Owner", "Admin")


def test_the_owner_is_told_to_transfer_first_and_a_member_may_leave(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    assert heading(site.get("/settings/leave")) == "Transfer ownership first"
    gus = joined(site, org, owner, "viewer", "gus")
    site.post("/auth/logout", {})
    site.sign_in(gus)
    assert heading(site.get("/settings/leave")).startswith("Leave")
    site.post("/settings/leave", {})
    with site.services.organizations.reading(org) as organization:
        assert dev(gus).user_id not in organization.member_by_user
    assert heading(site.get("/settings/members")) == "You are not in any organization yet"


def test_search_filter_and_paging(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    people = [joined(site, org, owner, "developer" if n % 2 else "viewer", f"p{n}") for n in range(6)]
    found = site.get(f"/settings/members?q={people[3].email}").get_data(as_text=True)
    assert people[3].email in found and people[2].email not in found
    developers = site.get(f"/settings/members?role={system_role_id(org, 'developer')}").get_data(as_text=True)
    assert all((p.email in developers) == (n % 2 == 1) for n, p in enumerate(people))
    assert "7 members" in site.get("/settings/members").get_data(as_text=True)


def test_the_switcher_shows_each_organization_and_switches(site: Site) -> None:
    owner = new_actor("owner")
    first = owned_organization(site, owner, "First")
    second = site.organization(dev(owner), "Second")
    page = site.get(f"/settings/members?org={second}").get_data(as_text=True)
    assert "of <strong>Second</strong>" in page and ">First</option>" in page
    assert "of <strong>Second</strong>" in site.get("/settings/members").get_data(as_text=True)  # remembered
    assert "of <strong>First</strong>" in site.get(f"/settings/members?org={first}").get_data(as_text=True)
    stranger_org = site.organization(new_actor("stranger"), "Not yours")
    assert "Not yours" not in site.get(f"/settings/members?org={stranger_org}").get_data(as_text=True)
