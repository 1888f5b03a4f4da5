"""Settings > Bulk jobs over HTTP: the Members page's selection (ticked rows, or every member matching its filter,
resolved on the server) starts one job per form; the job's page shows its progress and, at the end, each member's
result in words. A Viewer sees no selection, and forged posts are refused by the domain.

Tests that watch a job move stop the service's job runner and process the batches themselves. Those whose outcome
the store may change (the filter's search, the audit log's times that name removed members) run on both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest
from werkzeug.test import TestResponse

from membership import Actor
from membership.organization import system_role_id
from membership.permissions import VIEWER
from projections import jobs as jobs_reads
from projections.engine.store import wait_for
from tests.e2e.conftest import BOTH_STORES
from tests.factories import new_actor
from tests.web.conftest import CSRF, Site, heading
from tests.web.test_console_members import dev, joined, member_id, owned_organization, role_of
from web import console_bulk

FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
JOB_PAGE = re.compile(r"^/settings/jobs/([0-9a-f-]{36})$")
TAGS = re.compile(r"<[^>]+>")


# -- arranging ---------------------------------------------------------------------------------------------------
def settled(site: Site) -> None:
    """Every read model shows everything saved so far."""
    wait_for(site.services.read_db, site.services.organizations.recorder.max_notification_id(), timeout=10)


def seeded(site: Site, org: UUID, owner: Actor, label: str, count: int) -> list[Actor]:
    """`count` Viewers who joined by an invite link, saved at once (as benchmarks.harness.seed does)."""
    link = site.link(org, dev(owner), "viewer")
    assert link.id is not None
    people = [new_actor(f"{label}{n}") for n in range(count)]
    app = site.services.organizations
    with app.reading(org) as live:
        for person in people:
            live.redeem_invite_link(dev(person), link.id, uuid4(), app.clock())
        app.save(live)
    settled(site)
    return people


def custom_role(site: Site, org: UUID, owner: Actor, name: str, permissions: list[str]) -> UUID:
    receipt = site.caught_up(site.services.organizations.create_role(org, dev(owner), name, "", permissions))
    assert receipt.id is not None
    return receipt.id


def joined_as(site: Site, org: UUID, owner: Actor, role_id: UUID, label: str) -> Actor:
    person = new_actor(label)
    invitation = site.caught_up(site.services.organizations.invite_member(org, dev(owner), person.email, role_id, 7))
    site.caught_up(site.services.organizations.accept_invitation(dev(person), invitation.secret or ""))
    return person


def signed_in_as(site: Site, person: Actor) -> None:
    site.get("/settings/members")  # a page with the sign-out form
    site.post("/auth/logout", {})
    site.sign_in(person)


def jobs_stopped(site: Site) -> None:
    """The job runner stops: the test moves jobs batch by batch."""
    assert site.services.jobs is not None
    site.services.jobs.stop()


def jobs_done(site: Site) -> None:
    """Every job queued so far has finished, and the read models show it."""
    assert site.services.jobs is not None
    site.services.jobs.run_until_idle()
    settled(site)


def run_batch(site: Site, job: UUID, size: int) -> None:
    site.services.organizations.process_job_batch(job, size)
    settled(site)


# -- the forms ---------------------------------------------------------------------------------------------------
def members_page(site: Site, query: str = "") -> str:
    return site.get(f"/settings/members{query}").get_data(as_text=True)


@dataclass(frozen=True)
class BulkForm:
    key: str
    csrf_token: str


def bulk_form(page: str) -> BulkForm:
    """The Members page's bulk form as rendered: its own key, and the session's CSRF token."""
    key, token = FORM_KEY.search(page), CSRF.search(page)
    assert key and token, "the page has no bulk form"
    return BulkForm(key.group(1), token.group(1))


def submit(site: Site, form: BulkForm, action: str, member_ids: list[str], **fields: str) -> TestResponse:
    """The bulk form, as a browser sends it (ticked boxes repeat `member_id`)."""
    data = {"csrf_token": form.csrf_token, "form_key": form.key, "action": action, "scope": "selected", **fields}
    response = site.client.post("/settings/members/bulk", data={**data, "member_id": member_ids})
    site.last_page = response.get_data(as_text=True)
    return response


def started(response: TestResponse) -> UUID:
    match = JOB_PAGE.match(response.headers.get("Location", ""))
    assert response.status_code == 303 and match, (response.status_code, response.headers.get("Location"))
    return UUID(match.group(1))


def text(page: str) -> str:
    """The page's words, as read (tags gone, spaces folded; an address's <wbr> joins)."""
    return " ".join(TAGS.sub(" ", page.replace("<wbr>", "")).split())


def job_count(site: Site, org: UUID) -> int:
    return jobs_reads.list_jobs(site.services.read_db, org).total


# -- the tests ---------------------------------------------------------------------------------------------------
@BOTH_STORES
def test_ticked_members_start_a_job_whose_page_shows_its_progress_then_every_result_in_words(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    viewer_permissions = sorted(VIEWER.permissions)
    lead_role = custom_role(site, org, owner, "Lead", [*viewer_permissions, "manage:members"])
    guest_role = custom_role(site, org, owner, "Guest", ["view:members"])
    lee = joined_as(site, org, owner, lead_role, "lee")
    vic, dev_member = joined(site, org, owner, "viewer", "vic"), joined(site, org, owner, "developer", "devi")
    chosen = [member_id(site, org, p) for p in (vic, owner, lee, dev_member)] + [str(uuid4())]
    jobs_stopped(site)
    # Lee, who may manage members, ticks five: a Viewer, the Owner, herself, a Developer, and one who is gone
    signed_in_as(site, lee)
    page = members_page(site)
    assert all(f'name="member_id" value="{member}"' in page for member in chosen[:4])
    job = started(submit(site, bulk_form(page), f"role:{guest_role}", chosen))
    waiting = site.get(f"/settings/jobs/{job}")
    said = text(waiting.get_data(as_text=True))
    assert heading(waiting) == "Change the role of 5 members to Guest" and "The job was started." in said
    assert "Waiting to start" in said and "0 of 5 members processed" in said and "Results" not in said
    assert "Cancel the job" in said and f'href="/settings/jobs/{job}">Refresh' in site.last_page
    assert (
        "/assets/job-progress.js" in site.last_page
        and "script-src 'self'" in waiting.headers["Content-Security-Policy"]
    )
    # Two items, then the rest
    run_batch(site, job, 2)
    said = text(site.get(f"/settings/jobs/{job}").get_data(as_text=True))
    assert "Running" in said and "2 of 5 members processed" in said and "1 done, 1 not done so far" in said
    run_batch(site, job, 10)
    finished = site.get(f"/settings/jobs/{job}")
    said = text(finished.get_data(as_text=True))
    assert "Finished: some members were not changed" in said and "5 of 5 members processed" in said
    assert "Cancel the job" not in said and "script-src" not in finished.headers["Content-Security-Policy"]
    assert f"Vic {vic.email} Done: now Guest" in said
    assert f"Owner {owner.email} Skipped: the Owner (their role changes only by transferring ownership)" in said
    assert f"Lee {lee.email} Skipped: this is you (a bulk job never changes the person who started it)" in said
    assert f"Devi {dev_member.email} Refused: You cannot manage a member who has permissions you lack." in said
    assert f"Unknown member {chosen[4]} Not found: not a member of the organization (any more)" in said
    assert (
        "Done: now Guest 1" in said
        and "Skipped: the Owner (their role changes only by transferring ownership) 1" in said
    )
    assert (role_of(site, org, vic), role_of(site, org, dev_member), role_of(site, org, owner)) == (
        "Guest",
        "Developer",
        "Owner",
    )
    only_not_done = text(site.get(f"/settings/jobs/{job}?show=not_done").get_data(as_text=True))
    assert vic.email not in only_not_done and owner.email in only_not_done


@BOTH_STORES
def test_all_members_matching_the_filter_are_resolved_on_the_server_across_pages(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    zeds = seeded(site, org, owner, "zed", 55)  # more than a page of the Members page (50)
    amy = joined(site, org, owner, "viewer", "amy")
    page = members_page(site, "?q=zed")
    assert "All 55 members matching this filter" in text(page) and page.count('name="member_id"') == 50
    job = started(
        submit(site, bulk_form(page), f"role:{system_role_id(org, 'developer')}", [], scope="matching", q="zed")
    )
    jobs_done(site)
    monkeypatch.setattr(console_bulk, "RESULTS_PAGE_SIZE", 20)
    said = text(site.get(f"/settings/jobs/{job}?page=3").get_data(as_text=True))
    assert "Change the role of 55 members to Developer" in said and "Finished: every member done" in said
    assert "Done: now Developer 55" in said and "Page 3 of 3" in said and f"55 Zed54 {zeds[54].email}" in said
    assert {role_of(site, org, person) for person in zeds} == {"Developer"}
    assert role_of(site, org, amy) == "Viewer" and role_of(site, org, owner) == "Owner"


def test_a_filter_matching_more_members_than_a_job_takes_starts_nothing_and_says_so(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    seeded(site, org, owner, "yan", 6)
    monkeypatch.setattr(console_bulk, "MAX_ITEMS", 5)
    answer = submit(site, bulk_form(members_page(site)), "remove", [], scope="matching", q="yan")
    assert answer.status_code == 303 and answer.headers["Location"] == "/settings/members?q=yan"
    page = members_page(site, "?q=yan")
    assert "6 members match this filter; a job changes at most 5. Narrow the search or the role filter." in text(page)
    nobody = submit(site, bulk_form(page), "remove", [], scope="matching", q="nobody-at-all")
    assert nobody.status_code == 303 and "No member matches this filter." in members_page(site)
    assert submit(site, bulk_form(site.last_page), "remove", []).status_code == 303
    assert "Tick at least one member" in members_page(site) and job_count(site, org) == 0


def test_a_viewer_sees_no_selection_and_forged_posts_are_refused(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    viewer = joined(site, org, owner, "viewer", "val")
    jobs_stopped(site)
    owners_job = started(
        submit(site, bulk_form(members_page(site)), "remove", [member_id(site, org, viewer)], confirmed="yes")
    )
    signed_in_as(site, viewer)
    page = members_page(site)
    assert 'id="bulk"' not in page and 'name="member_id"' not in page and "form_key" not in page
    forged = submit(
        site, BulkForm("k" * 24, site.csrf_token()), "remove", [member_id(site, org, owner)], confirmed="yes"
    )
    assert forged.status_code == 303 and forged.headers["Location"] == "/settings/members"
    assert "permission" in members_page(site).lower() and job_count(site, org) == 1
    listing = site.get("/settings/jobs")
    assert listing.status_code == 403 and "does not have it" in text(listing.get_data(as_text=True))
    assert site.get(f"/settings/jobs/{owners_job}").status_code == 403
    cancel = site.post(f"/settings/jobs/{owners_job}/cancel", {})
    assert cancel.status_code == 303 and cancel.headers["Location"] == "/settings/members"
    unchanged = jobs_reads.get_job(site.services.read_db, org, owners_job)
    assert unchanged is not None and not unchanged.cancel_requested
    without_token = site.client.post("/settings/members/bulk", data={"action": "remove", "member_id": str(uuid4())})
    assert without_token.status_code == 400


def test_the_same_form_submitted_twice_starts_one_job(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    people = [member_id(site, org, joined(site, org, owner, "viewer", f"p{n}")) for n in range(3)]
    developer = f"role:{system_role_id(org, 'developer')}"
    form = bulk_form(members_page(site))
    first, second = submit(site, form, developer, people[:2]), submit(site, form, developer, people[:2])
    assert started(first) == started(second) and job_count(site, org) == 1
    changed = submit(site, form, developer, people)  # the same form, other members: not a retry
    assert changed.status_code == 303 and changed.headers["Location"] == "/settings/members"
    assert "This form already started a job for other members" in members_page(site)
    another = started(submit(site, bulk_form(site.last_page), developer, people))
    listed = text(site.get("/settings/jobs").get_data(as_text=True))
    assert another != started(first) and job_count(site, org) == 2
    assert site.get(f"/settings/jobs/{uuid4()}").status_code == 404
    assert listed.index("Change the role of 3 members") < listed.index("Change the role of 2 members")  # newest first


@BOTH_STORES
def test_removing_asks_first_and_the_results_name_whom_it_removed(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    ann, ben = joined(site, org, owner, "developer", "ann"), joined(site, org, owner, "viewer", "ben")
    form = bulk_form(members_page(site))
    asked = submit(site, form, "remove", [member_id(site, org, ann), member_id(site, org, ben)])
    assert asked.status_code == 200 and heading(asked) == "Remove 2 members?" and job_count(site, org) == 0
    confirm = asked.get_data(as_text=True)
    assert f'name="form_key" value="{form.key}"' in confirm and confirm.count('name="member_id"') == 2
    job = started(submit(site, form, "remove", [member_id(site, org, ann), member_id(site, org, ben)], confirmed="yes"))
    jobs_done(site)
    said = text(site.get(f"/settings/jobs/{job}").get_data(as_text=True))
    assert "Remove 2 members" in said and "Finished: every member done" in said
    assert f"{ann.email} Removed" in said and f"{ben.email} Removed" in said
    assert site.member_user_ids(org) == {dev(owner).user_id}


def test_cancelling_stops_the_job_after_the_batch_in_progress(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    people = [member_id(site, org, joined(site, org, owner, "viewer", f"c{n}")) for n in range(3)]
    jobs_stopped(site)
    job = started(submit(site, bulk_form(members_page(site)), f"role:{system_role_id(org, 'developer')}", people))
    run_batch(site, job, 1)
    site.get(f"/settings/jobs/{job}")
    assert site.post(f"/settings/jobs/{job}/cancel", {}).headers["Location"] == f"/settings/jobs/{job}"
    said = text(site.get(f"/settings/jobs/{job}").get_data(as_text=True))
    assert (
        "The job stops after the batch in progress." in said and "Running: stopping after the batch in progress" in said
    )
    assert "Cancel the job" not in said
    run_batch(site, job, 1)
    said = text(site.get(f"/settings/jobs/{job}").get_data(as_text=True))
    assert "Cancelled" in said and "1 of 3 members processed" in said
    assert "Done: now Developer 1" in said and "Not processed: the job was cancelled first 2" in said
    site.post(f"/settings/jobs/{job}/cancel", {})
    assert "This job has already finished (cancelled)." in text(
        site.get(f"/settings/jobs/{job}").get_data(as_text=True)
    )


def test_names_and_role_names_with_markup_are_escaped(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    role = custom_role(site, org, owner, "<b>QA</b>", ["view:members"])
    mallory = Actor(f"mallory-{uuid4().hex[:8]}", f"mallory.{uuid4().hex[:8]}@example.com", "<script>alert(1)</script>")
    invitation = site.caught_up(site.services.organizations.invite_member(org, dev(owner), mallory.email, role, 7))
    site.caught_up(site.services.organizations.accept_invitation(dev(mallory), invitation.secret or ""))
    page = members_page(site)
    assert "Select &lt;script&gt;alert(1)&lt;/script&gt;" in page and "Change role to &lt;b&gt;QA&lt;/b&gt;" in page
    job = started(submit(site, bulk_form(page), f"role:{role}", [member_id(site, org, mallory)]))
    jobs_done(site)
    html = site.get(f"/settings/jobs/{job}").get_data(as_text=True)
    assert "to &lt;b&gt;QA&lt;/b&gt;" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html and "<b>QA" not in html
