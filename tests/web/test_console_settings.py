"""Settings > Organization over HTTP: rename (manage:settings) and delete (the Owner, typing the name).

Forms are shown only to those the domain would accept; forged posts are refused in words and change nothing.
"""

from __future__ import annotations

from membership import Actor
from tests.e2e.conftest import BOTH_STORES
from tests.factories import new_actor
from tests.web.conftest import Site, heading
from tests.web.test_console_members import dev, joined, owned_organization

PAGE = "/settings/organization"


def page_text(site: Site) -> str:
    return site.get(PAGE).get_data(as_text=True)


def switch_to(site: Site, person: Actor) -> None:
    site.get("/settings/members")  # a page with the sign-out form
    site.post("/auth/logout", {})
    site.sign_in(person)


def organization_name(site: Site, org: object) -> str:
    with site.services.organizations.reading(org) as organization:  # type: ignore[arg-type]
        return organization.name


def test_the_owner_renames_the_organization_and_names_are_escaped(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner, "Acme")
    html = page_text(site)
    assert heading(site.get(PAGE)) == "Organization settings"
    assert 'action="/settings/organization/name"' in html and 'action="/settings/organization/delete"' in html

    renamed = site.post("/settings/organization/name", {"name": "  <script>alert(1)</script> Labs "})

    assert renamed.status_code == 303 and renamed.headers["Location"] == PAGE
    assert organization_name(site, org) == "<script>alert(1)</script> Labs"
    html = page_text(site)
    assert "The organization was renamed." in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Labs" in html and "<script>alert" not in html
    sentences = site.get("/settings/audit-log").get_data(as_text=True)
    assert "renamed the organization from Acme to &lt;script&gt;" in sentences


def test_a_refused_name_is_told_in_words_and_nothing_changes(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner, "Acme")
    page_text(site)
    site.post("/settings/organization/name", {"name": "bad\x07name"})
    html = page_text(site)
    assert 'class="flash error"' in html and "a control character" in html.lower()
    assert organization_name(site, org) == "Acme"


def test_an_admin_renames_but_may_not_delete(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner, "Acme")
    admin = joined(site, org, dev(owner), "admin", "admin")
    switch_to(site, admin)
    html = page_text(site)
    assert 'action="/settings/organization/name"' in html
    assert 'action="/settings/organization/delete"' not in html and "Only the Owner can delete" in html

    site.post("/settings/organization/delete", {"confirm_name": "Acme"})  # forged

    assert "Only the Owner can delete the organization." in page_text(site)
    assert site.member_user_ids(org) == {dev(owner).user_id, dev(admin).user_id}


def test_a_viewer_sees_the_name_only_and_a_forged_rename_is_refused(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner, "Acme")
    viewer = joined(site, org, dev(owner), "viewer", "viewer")
    switch_to(site, viewer)
    html = page_text(site)
    assert "<form" in html  # the switcher and sign-out, but no settings form
    assert 'action="/settings/organization/name"' not in html and 'action="/settings/organization/delete"' not in html

    site.post("/settings/organization/name", {"name": "Viewer's"})

    assert "permission" in page_text(site).lower() and organization_name(site, org) == "Acme"


def test_deleting_needs_the_name_typed_exactly(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner, "Acme Labs")
    page_text(site)
    for typed in ("", "acme labs", "Acme"):
        answer = site.post("/settings/organization/delete", {"confirm_name": typed})
        assert answer.headers["Location"] == PAGE
        assert "exactly as shown" in page_text(site)
    assert dev(owner).user_id in site.member_user_ids(org)


def test_a_post_without_the_csrf_token_is_refused(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner, "Acme")
    answer = site.post("/settings/organization/delete", {"confirm_name": "Acme"}, csrf=False)
    assert answer.status_code == 400
    assert dev(owner).user_id in site.member_user_ids(org)


@BOTH_STORES
def test_the_owner_deletes_the_organization_and_lands_in_another(site: Site) -> None:
    owner = new_actor("owner")
    kept = owned_organization(site, owner, "Kept")
    doomed = site.organization(dev(owner), "Doomed")
    member = joined(site, doomed, dev(owner), "developer", "dev")
    site.get(f"/settings/members?org={doomed}")
    page_text(site)

    answer = site.post("/settings/organization/delete", {"confirm_name": " Doomed "})

    assert answer.headers["Location"] == "/settings/members"
    html = site.get("/settings/members").get_data(as_text=True)
    assert "The organization Doomed was deleted." in html and "Kept" in html and ">Doomed<" not in html
    assert str(kept) in html
    switch_to(site, member)
    assert heading(site.get("/settings/members")) == "You are not in any organization yet"
    assert site.get(f"/settings/members?org={doomed}").status_code == 200
    assert "Doomed" not in site.last_page
