"""Settings > Roles over HTTP: every role with its member count; the system roles read-only; custom roles
created, edited and deleted through the grid form; and only what the signed-in person may do offered, the
domain refusing the rest in words (forged posts change nothing)."""

from __future__ import annotations

import re
from uuid import UUID

from membership import Actor
from membership.organization import system_role_id
from membership.permissions import ALL_PERMISSIONS
from tests.factories import new_actor
from tests.web.conftest import Site, heading
from tests.web.test_console_members import dev, joined, member_id, owned_organization, role_of

CHECKBOX = re.compile(r"<input type=\"checkbox\"[^>]*>", re.S)


def roles_of(site: Site, org: UUID) -> dict[str, tuple[str, frozenset[str]]]:
    """Name -> (description, permissions) of every role, as the organization holds them."""
    with site.services.organizations.reading(org) as organization:
        return {role.name: (role.description, frozenset(role.permissions)) for role in organization.roles.values()}


def role_id(site: Site, org: UUID, name: str) -> str:
    with site.services.organizations.reading(org) as organization:
        return next(str(role.id) for role in organization.roles.values() if role.name == name)


def custom_role(site: Site, org: UUID, owner: Actor, name: str, permissions: set[str], description: str = "") -> str:
    receipt = site.services.organizations.create_role(org, dev(owner), name, description, sorted(permissions))
    return str(site.caught_up(receipt).id)


def give(site: Site, org: UUID, owner: Actor, person: Actor, role: str) -> None:
    changed = site.services.organizations.change_role(org, dev(owner), UUID(member_id(site, org, person)), UUID(role))
    site.caught_up(changed)


def boxes(html: str) -> dict[str, tuple[bool, bool]]:
    """The grid's checkboxes: permission -> (checked, enabled)."""
    found = {}
    for tag in CHECKBOX.findall(html):
        value = re.search(r'value="([^"]+)"', tag)
        assert value, tag
        found[value.group(1)] = (" checked" in tag, " disabled" not in tag)
    return found


def switch_to(site: Site, person: Actor) -> None:
    site.get("/settings/roles")  # its sign-out form
    site.post("/auth/logout", {})
    site.sign_in(person)


def test_every_role_is_listed_with_its_member_count_and_the_system_roles_are_read_only(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    joined(site, org, owner, "developer", "dev1")
    joined(site, org, owner, "developer", "dev2")
    page = site.get("/settings/roles")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and heading(page) == "Roles"
    rows = html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert [row.split("<th scope=\"row\">")[1].split(" <span")[0] for row in rows] == [
        "Owner", "Admin", "Developer", "Viewer"
    ]  # fmt: skip
    developer = rows[2]
    assert '>2<span class="visually-hidden"> members with the role Developer' in developer
    assert "<li>Create, change and delete instances, projects and deployments</li>" in developer
    assert "<li>View everything else</li>" in developer
    assert "<li>Create, change and delete everything</li>" in rows[0] and "<li>View everything</li>" in rows[3]
    assert "Read-only" in developer and "/edit" not in html and "/delete" not in html
    assert ">Roles</a>" in html and 'aria-current="page"' in html.split(">Roles</a>")[0].rsplit("<a", 1)[1]


def test_a_system_role_cannot_be_edited_or_deleted_even_by_a_forged_post(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    viewer = str(system_role_id(org, "viewer"))
    edit = site.get(f"/settings/roles/{viewer}/edit")
    assert edit.status_code == 409 and "The system role &#39;Viewer&#39; cannot be changed" in site.last_page
    assert site.get(f"/settings/roles/{viewer}/delete").status_code == 409
    site.get("/settings/roles")
    forged = site.post(
        f"/settings/roles/{viewer}", {"name": "Viewer", "description": "", "permissions": "manage:billing"}
    )
    assert forged.status_code == 303 and forged.headers["Location"] == "/settings/roles"
    assert "The system role &#39;Viewer&#39; cannot be changed or deleted." in site.get("/settings/roles").get_data(
        as_text=True
    )
    site.post(f"/settings/roles/{viewer}/delete", {})
    assert "cannot be changed or deleted" in site.get("/settings/roles").get_data(as_text=True)
    assert roles_of(site, org)["Viewer"][1] == frozenset(p for p in ALL_PERMISSIONS if p.startswith("view:"))


def test_the_owner_creates_a_role_with_the_grid_edits_it_and_deletes_it_after_confirming(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    assert 'href="/settings/roles/new"' in site.get("/settings/roles").get_data(as_text=True)
    form = site.get("/settings/roles/new")
    assert heading(form) == "Create role" and "Manage includes View" in site.last_page
    grid = boxes(site.last_page)
    assert set(grid) == ALL_PERMISSIONS and all(enabled and not checked for checked, enabled in grid.values())
    assert '<label for="perm-manage-billing" class="visually-hidden">Manage billing</label>' in site.last_page
    created = site.client.post("/settings/roles", data={
        "csrf_token": site.csrf_token(), "name": "  QA   team ", "description": "Tests releases",
        "permissions": ["view:members", "manage:deployments"]})  # fmt: skip
    assert created.status_code == 303 and created.headers["Location"] == "/settings/roles"
    assert roles_of(site, org)["QA team"] == (
        "Tests releases",
        frozenset({"view:members", "manage:deployments", "view:deployments"}),
    )
    listed = site.get("/settings/roles").get_data(as_text=True)
    qa = role_id(site, org, "QA team")
    assert "The role QA team was created." in listed and f"/settings/roles/{qa}/edit" in listed
    assert f"/settings/roles/{qa}/delete" in listed

    edit = site.get(f"/settings/roles/{qa}/edit")
    assert heading(edit) == "Edit role QA team" and 'value="QA team"' in site.last_page
    assert {p for p, (checked, _) in boxes(site.last_page).items() if checked} == {
        "view:members", "view:deployments", "manage:deployments"
    }  # fmt: skip
    saved = site.client.post(f"/settings/roles/{qa}", data={
        "csrf_token": site.csrf_token(), "name": "Quality", "description": "", "permissions": ["manage:billing"]})  # fmt: skip
    assert saved.status_code == 303 and saved.headers["Location"] == "/settings/roles"
    assert roles_of(site, org)["Quality"] == ("", frozenset({"manage:billing", "view:billing"}))
    assert "The role Quality was saved." in site.get("/settings/roles").get_data(as_text=True)

    confirm = site.get(f"/settings/roles/{qa}/delete")
    assert heading(confirm) == "Delete the role Quality?" and "Delete role" in site.last_page
    assert "Quality" in roles_of(site, org)  # asking deletes nothing
    deleted = site.post(f"/settings/roles/{qa}/delete", {})
    assert deleted.status_code == 303 and "Quality" not in roles_of(site, org)
    after = site.get("/settings/roles").get_data(as_text=True)
    assert "The role was deleted." in after and "Quality" not in after


def test_a_taken_name_is_refused_in_words_and_the_form_keeps_what_was_typed(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    custom_role(site, org, owner, "Support", {"view:members"})
    site.get("/settings/roles/new")
    refused = site.client.post("/settings/roles", data={
        "csrf_token": site.csrf_token(), "name": "sUPPORT", "description": "second try",
        "permissions": ["manage:servers"]})  # fmt: skip
    assert refused.status_code == 303 and refused.headers["Location"] == "/settings/roles/new"
    form = site.get("/settings/roles/new").get_data(as_text=True)
    assert "A role named &#39;Support&#39; already exists." in form and 'role="alert"' in form
    assert 'value="sUPPORT"' in form and ">second try</textarea>" in form
    assert boxes(form)["manage:servers"] == (True, True)
    assert 'value="sUPPORT"' not in site.get("/settings/roles/new").get_data(as_text=True)  # shown once
    assert sorted(roles_of(site, org)) == ["Admin", "Developer", "Owner", "Support", "Viewer"]
    # Renaming another role to the taken name (any case) is refused the same way
    other = custom_role(site, org, owner, "Ops", {"view:servers"})
    site.get(f"/settings/roles/{other}/edit")
    site.post(f"/settings/roles/{other}", {"name": "SUPPORT", "description": ""})
    assert "already exists" in site.get(f"/settings/roles/{other}/edit").get_data(as_text=True)
    assert "Ops" in roles_of(site, org)
    # An empty name: the domain's words
    site.post("/settings/roles", {"name": "   ", "description": ""})
    assert "A role name must have 1 to 64 characters." in site.get("/settings/roles/new").get_data(as_text=True)


def test_a_role_in_use_is_not_deleted_and_says_why(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    held = custom_role(site, org, owner, "Held", {"view:members"})
    invited = custom_role(site, org, owner, "Invited", {"view:members"})
    linked = custom_role(site, org, owner, "Linked", {"view:members"})
    give(site, org, owner, joined(site, org, owner, "viewer", "holder"), held)
    site.caught_up(site.services.organizations.invite_member(org, dev(owner), "someone@example.com", UUID(invited)))
    site.caught_up(site.services.organizations.create_invite_link(org, dev(owner), UUID(linked)))

    confirm = site.get(f"/settings/roles/{held}/delete")
    assert (
        heading(confirm) == "Give its members another role first" and "1 member holds the role Held" in site.last_page
    )
    assert "Delete role" not in site.last_page
    site.post(f"/settings/roles/{held}/delete", {})  # forged: the domain refuses
    assert "Members hold this role; give them another role first." in site.get("/settings/roles").get_data(as_text=True)
    for role, why in ((invited, "Pending invitations grant this role; cancel them first."),
                      (linked, "Invite links grant this role; delete them first.")):  # fmt: skip
        assert "Delete role" in site.get(f"/settings/roles/{role}/delete").get_data(as_text=True)
        site.post(f"/settings/roles/{role}/delete", {})
        assert why in site.get("/settings/roles").get_data(as_text=True)
    assert {"Held", "Invited", "Linked"} <= set(roles_of(site, org))


def test_a_manager_lacking_billing_may_not_grant_it_nor_change_a_role_that_has_it(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    without_billing = ALL_PERMISSIONS - {"view:billing", "manage:billing"}
    manager_role = custom_role(site, org, owner, "Manager", set(without_billing))
    billing = custom_role(site, org, owner, "Billing", {"view:billing"})
    ops = custom_role(site, org, owner, "Ops", {"manage:servers"})
    mia = joined(site, org, owner, "viewer", "mia")
    give(site, org, owner, mia, manager_role)
    switch_to(site, mia)

    listed = site.get("/settings/roles").get_data(as_text=True)
    assert "You are Manager." in listed and 'href="/settings/roles/new"' in listed
    assert f"/settings/roles/{ops}/edit" in listed and f"/settings/roles/{billing}/edit" not in listed
    assert f"/settings/roles/{billing}/delete" not in listed
    grid = boxes(site.get("/settings/roles/new").get_data(as_text=True))
    assert grid["view:billing"] == grid["manage:billing"] == (False, False)
    assert grid["manage:members"] == (False, True) and "the others are greyed out" in site.last_page

    site.post("/settings/roles", {"name": "Sneaky", "description": "", "permissions": "manage:billing"})
    assert "A role cannot have permissions you lack." in site.get("/settings/roles/new").get_data(as_text=True)
    site.post(f"/settings/roles/{ops}", {"name": "Ops", "description": "", "permissions": "view:billing"})
    assert "A role cannot have permissions you lack." in site.get(f"/settings/roles/{ops}/edit").get_data(as_text=True)
    assert site.get(f"/settings/roles/{billing}/edit").status_code == 403
    site.get("/settings/roles")
    site.post(f"/settings/roles/{billing}", {"name": "Billing", "description": "", "permissions": "view:members"})
    assert "You cannot change a role that has permissions you lack." in site.get("/settings/roles").get_data(
        as_text=True
    )
    site.post(f"/settings/roles/{billing}/delete", {})
    assert "You cannot change a role that has permissions you lack." in site.get("/settings/roles").get_data(
        as_text=True
    )
    roles = roles_of(site, org)
    assert "Sneaky" not in roles and roles["Ops"][1] == {"manage:servers", "view:servers"}
    assert roles["Billing"][1] == {"view:billing"}


def test_a_viewer_sees_the_roles_but_no_control_and_forged_posts_are_refused(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    custom = custom_role(site, org, owner, "Readers", {"view:members"})
    viewer = joined(site, org, owner, "viewer", "viewer")
    switch_to(site, viewer)
    listed = site.get("/settings/roles")
    html = listed.get_data(as_text=True)
    assert listed.status_code == 200 and "Readers" in html and "View members" in html
    assert "/settings/roles/new" not in html and "/edit" not in html and "/delete" not in html
    assert "Create role" not in html
    assert site.get("/settings/roles/new").status_code == 403
    assert site.get(f"/settings/roles/{custom}/edit").status_code == 403
    assert site.get(f"/settings/roles/{custom}/delete").status_code == 403
    site.get("/settings/roles")
    site.post("/settings/roles", {"name": "Mine", "description": "", "permissions": "view:members"})
    assert (
        site.get("/settings/roles").get_data(as_text=True).count("This action requires the manage:roles permission.")
        == 1
    )
    site.post(f"/settings/roles/{custom}", {"name": "Renamed", "description": ""})
    assert "requires the manage:roles permission" in site.get("/settings/roles").get_data(as_text=True)
    site.post(f"/settings/roles/{custom}/delete", {})
    assert "requires the manage:roles permission" in site.get("/settings/roles").get_data(as_text=True)
    without_token = site.post(f"/settings/roles/{custom}/delete", {}, csrf=False)
    assert without_token.status_code == 400
    assert sorted(roles_of(site, org)) == ["Admin", "Developer", "Owner", "Readers", "Viewer"]
    assert role_of(site, org, viewer) == "Viewer"


def test_names_and_descriptions_with_markup_are_shown_as_text(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    site.get("/settings/roles/new")
    site.post("/settings/roles", {"name": "<script>alert(1)</script>", "description": "<b>bold</b> & \"quoted\"",
                                  "permissions": "view:members"})  # fmt: skip
    role = role_id(site, org, "<script>alert(1)</script>")
    for path in ("/settings/roles", f"/settings/roles/{role}/edit", f"/settings/roles/{role}/delete"):
        html = site.get(path).get_data(as_text=True)
        assert "<script>" not in html and "<b>bold" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34;" in site.get(f"/settings/roles/{role}/edit").get_data(
        as_text=True
    )
    # A refused form brings the markup back as text too
    site.post("/settings/roles", {"name": "<SCRIPT>alert(1)</SCRIPT>", "description": "<i>x</i>"})
    again = site.get("/settings/roles/new").get_data(as_text=True)
    assert "<SCRIPT>" not in again and "<i>x" not in again and 'value="&lt;SCRIPT&gt;alert(1)&lt;/SCRIPT&gt;"' in again
