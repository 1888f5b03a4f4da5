"""Settings > Access review and each member's History over HTTP (issue 16): the access read model's answers
as pages for members with view:members, the review exported as CSV, the audit log filtered by the e-mail and
the role an event is about; markup stays text, and what the page cannot use is said beside the form."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from uuid import UUID

from membership.organization import system_role_id
from tests.factories import new_actor
from tests.web.conftest import Site, heading
from tests.web.test_console_audit import sentences
from tests.web.test_console_members import dev, joined, member_id, owned_organization

REVIEW = "/settings/access-review"
TODAY = datetime.now(UTC).date().isoformat()


def test_a_members_history_page_names_each_role_and_who_granted_it(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    ann = joined(site, org, owner, "developer", "ann")
    ann_id = member_id(site, org, ann)
    site.caught_up(site.services.organizations.change_role(org, dev(owner), UUID(ann_id), system_role_id(org, "admin")))
    members = site.get("/settings/members").get_data(as_text=True)
    assert f"/settings/members/{ann_id}/history" in members

    page = site.get(f"/settings/members/{ann_id}/history")

    html = page.get_data(as_text=True)
    assert page.status_code == 200 and heading(page) == f"History of {ann.name}"
    cells = (re.sub(r"<[^>]+>", " ", row.replace("<wbr>", "")) for row in re.findall(r"<tr>(.*?)</tr>", html, re.S))
    rows = [" ".join(cell.split()) for cell in cells]
    assert rows[1].startswith("Developer") and f"invitation by {owner.email}" in rows[1]
    assert f"role change by {owner.email}" in rows[1]  # how it ended
    assert rows[2].startswith("Admin") and "still held" in rows[2]
    assert site.get("/settings/members/00000000-0000-4000-8000-000000000000/history").status_code == 404


def test_an_access_review_lists_holders_with_grants_and_exports_csv(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    leads = site.caught_up(site.services.organizations.create_role(org, dev(owner), "<i>Leads</i>", "",
                                                                   ["manage:members"]))  # fmt: skip
    ann = new_actor("ann")
    invited = site.caught_up(site.services.organizations.invite_member(org, dev(owner), ann.email, leads.id))
    site.caught_up(site.services.organizations.accept_invitation(dev(ann), invited.secret or ""))
    joined(site, org, owner, "viewer", "vic")
    form = site.get(REVIEW)
    assert heading(form) == "Access review" and "<table" not in form.get_data(as_text=True)

    page = site.get(f"{REVIEW}?permission=manage:members&since={TODAY}&until={TODAY}")

    html = page.get_data(as_text=True)
    assert "2 people held manage:members" in html and "&lt;i&gt;Leads&lt;/i&gt;" in html and "<i>Leads" not in html
    assert html.count('<th scope="row">') == 2 and "vic." not in html
    exported = site.get(f"{REVIEW}/export?permission=manage:members&since={TODAY}&until={TODAY}")
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert exported.mimetype == "text/csv" and sorted(r["role"] for r in rows) == ["<i>Leads</i>", "Owner"]
    assert {r["email"] for r in rows} == {owner.email, ann.email} and {r["grantedBy"] for r in rows} == {owner.email}


def test_a_review_the_page_cannot_make_is_said_in_words(site: Site) -> None:
    owned_organization(site, new_actor("owner"))
    page = site.get(f"{REVIEW}?permission=fly:planes&since=yesterday&until={TODAY}")
    html = page.get_data(as_text=True)
    assert page.status_code == 400 and "Choose a permission from the list." in html
    assert "From must be a date, such as 2025-01-31." in html
    backwards = site.get(f"{REVIEW}?since={TODAY}&until=2020-01-01")
    assert backwards.status_code == 400 and "From must be on or before To." in backwards.get_data(as_text=True)


def test_history_pages_need_view_members(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    builds = site.caught_up(site.services.organizations.create_role(org, dev(owner), "Builds", "",
                                                                    ["manage:deployments"]))  # fmt: skip
    builder = new_actor("builder")
    invited = site.caught_up(site.services.organizations.invite_member(org, dev(owner), builder.email, builds.id))
    site.caught_up(site.services.organizations.accept_invitation(dev(builder), invited.secret or ""))
    site.get("/settings/members")
    site.post("/auth/logout", {})
    site.sign_in(builder)
    assert "/history" not in site.get("/settings/members").get_data(as_text=True)
    for path in (REVIEW, f"/settings/members/{member_id(site, org, owner)}/history"):
        assert site.get(path).status_code == 403, path


def test_the_audit_log_filters_by_the_email_and_the_role_an_event_is_about(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    ann = joined(site, org, owner, "developer", "ann")
    site.invite(org, dev(owner), "bob@example.com", "viewer")
    about_ann = [s for s in sentences(site, f"/settings/audit-log?email={ann.email.upper()}") if "mailer" not in s]
    assert about_ann == [f"{ann.email} accepted the invitation and joined as Developer",
                         f"{owner.email} invited {ann.email} as Developer"]  # fmt: skip
    viewer = str(system_role_id(org, "viewer"))
    assert sentences(site, f"/settings/audit-log?role={viewer}") == [f"{owner.email} invited bob@example.com as Viewer"]
    refused = site.get("/settings/audit-log?role=nobody")
    assert refused.status_code == 400 and "Choose a role from the list." in refused.get_data(as_text=True)
