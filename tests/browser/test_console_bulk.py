"""A bulk role change of 1,000 members in a real Chromium (issue 15), on SQLite and PostgreSQL: the Owner filters
the Members page, chooses "All 1,000 members matching this filter", changes their role to Developer, and the job's
page follows the progress by itself (web/static/job-progress.js reloads it) to completion and the results.

The 1,000 members are seeded through the application layer before the server starts (as benchmarks.harness.seed
does: an invite link redeemed in batches on one loaded aggregate); the server's read models catch up as it starts.
axe-core checks every page met; the job's page is also checked 375 px wide. Screenshots go to
tests/browser/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, ViewportSize, expect

from membership import Actor
from membership.organization import system_role_id
from membership.permissions import VIEWER
from service.bootstrap import build_organizations
from service.settings import Settings
from tests.browser.conftest import BOTH_STORES, LiveServer
from tests.browser.test_accept_flows import heading, sign_in_with_development_form, visit
from tests.e2e.conftest import User

pytestmark = pytest.mark.browser
MEMBERS = 1_000
SEED_BATCH = 500
SCREENSHOTS = Path(__file__).parent / "screenshots"
NARROW: ViewportSize = {"width": 375, "height": 800}
JOB_TIMEOUT_S = 30
FOCUS_REFRESH = """() => {
  const refresh = document.querySelector(".job-progress a[href]");
  if (refresh) { refresh.focus(); }
  return document.querySelector(".job-progress .status").textContent;
}"""
PROGRESS = """() => [document.querySelector(".job-progress .status").textContent,
                Number(document.querySelector("#job-progress").getAttribute("value"))]"""


def seed(settings: Settings, owner: User, domain: str, count: int) -> UUID:
    """An organization of `owner` with `count` Viewers at `domain`, written straight to the store."""
    app = build_organizations(settings)
    try:
        founder = Actor(owner.user_id, owner.email, owner.name)
        org = app.create_organization(founder, f"Bulk {domain.split('.')[0]}").organization_id
        link = app.create_invite_link(org, founder, system_role_id(org, VIEWER.key), 0, 7).id
        assert link is not None
        for first in range(0, count, SEED_BATCH):
            with app.reading(org) as live:
                now = datetime.now(UTC)
                for n in range(first, min(first + SEED_BATCH, count)):
                    person = Actor(f"seed:{n}@{domain}", f"member{n}@{domain}", f"Member {n}")
                    live.redeem_invite_link(person, link, uuid4(), now)
                app.save(live)
        return org
    finally:
        app.close()


def caught_up(server: LiveServer, owner: User, org: UUID, count: int) -> None:
    """The server's read models list every member (they catch up with the seeded events as it starts)."""
    deadline = time.monotonic() + 30
    while True:
        listed = server.api("GET", "/api/members?limit=1", owner, str(org))
        if listed.status_code == 200 and listed.json()["total"] == count + 1:
            return
        assert time.monotonic() < deadline, (listed.status_code, listed.text[:300])
        time.sleep(0.2)


def holding(server: LiveServer, owner: User, org: UUID, role: str) -> int:
    listed = server.api("GET", f"/api/members?limit=1&role={role}", owner, str(org))
    assert listed.status_code == 200, listed.text
    return int(listed.json()["total"])


def owner_and_domain() -> tuple[User, str]:
    """An Owner as the development sign-in makes them, and the e-mail domain of their members: no other test's."""
    tag = uuid4().hex[:8]
    return User(f"dev:owner.{tag}@example.com", f"owner.{tag}@example.com", "Olivia Owner"), f"bulk{tag}.example"


def sign_in(page: Page, server: LiveServer, user: User) -> None:
    visit(page, f"{server.url}/auth/login?next=/settings/members")
    sign_in_with_development_form(page, user)
    page.wait_for_url(f"{server.url}/settings/members")


def progress_until_finished(page: Page) -> list[int]:
    """The values the progress bar showed, as the page reloaded itself, until the job finished."""
    seen: list[int] = []
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            status, value = page.evaluate(PROGRESS)
        except PlaywrightError:  # the page was being replaced by its next version
            continue
        if not seen or seen[-1] != value:
            seen.append(value)
        if status.startswith("Finished"):
            return seen
        page.wait_for_timeout(100)
    pytest.fail(f"the job's page did not show it finished within {JOB_TIMEOUT_S} s; progress seen: {seen}")


def fits_375_px_wide(page: Page, axe_check: Callable[..., None], name: str | None, shown: str) -> None:
    """375 px wide, the page stays within the screen (a wide table scrolls in its own box) and passes axe; the
    screenshot `name` shows the part `shown` (a CSS selector)."""
    size = page.viewport_size
    page.set_viewport_size(NARROW)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"], page.url
        axe_check(page)
        if name is not None:
            page.locator(shown).scroll_into_view_if_needed()
            screenshot(page, name)
    finally:
        if size is not None:
            page.set_viewport_size(size)


def screenshot(page: Page, name: str) -> None:
    """What the window shows (the top of the page: the results list a hundred members)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


@BOTH_STORES
def test_a_bulk_role_change_of_1000_members_shows_its_progress_to_completion_and_the_results(
    live_server: Callable[..., LiveServer],
    settings_for: Callable[..., Settings],
    store: str,
    page: Page,
    axe_check: Callable[..., None],
) -> None:
    owner, domain = owner_and_domain()
    org = seed(settings_for(store), owner, domain, MEMBERS)
    server = live_server()
    caught_up(server, owner, org, MEMBERS)

    # The Owner signs in and filters the Members page down to the 1,000
    sign_in(page, server, owner)
    page.get_by_label("Search").fill(domain)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("p.lead")).to_contain_text(f"{MEMBERS} members")
    expect(page.get_by_role("checkbox", name=re.compile(r"^Select Member \d+$"))).to_have_count(50)  # a page
    axe_check(page)

    # "All 1,000 members matching this filter", Change role to Developer
    page.get_by_label("All 1,000 members matching this filter").check()
    page.get_by_label("Action").select_option(label="Change role to Developer")
    if store.startswith("sqlite"):
        screenshot(page, "bulk-selection.png")
    fits_375_px_wide(page, axe_check, "bulk-selection-375px.png" if store.startswith("sqlite") else None, "#bulk")
    page.get_by_role("button", name="Apply to members").click()
    page.wait_for_url(re.compile(rf"{re.escape(server.url)}/settings/jobs/[0-9a-f-]{{36}}$"))
    assert heading(page) == "Change the role of 1,000 members to Developer"
    expect(page.get_by_role("status").filter(has_text="The job was started.")).to_be_visible()
    # While it runs the page says how far it is, and updates wait while a control has the focus: axe reads it so
    status = page.evaluate(FOCUS_REFRESH)
    if not status.startswith("Finished"):
        expect(page.get_by_role("link", name="Refresh")).to_be_focused()
        expect(page.get_by_label("Update this page every 2 seconds")).to_be_checked()
        assert re.match(r"\d[\d,]* of 1,000 · ", page.title()), page.title()
        axe_check(page)
        page.evaluate("document.activeElement.blur()")

    # Progress to completion, the page moving by itself (the test never reloads it)
    seen = progress_until_finished(page)
    assert seen == sorted(seen) and seen[-1] == MEMBERS, seen
    expect(page.locator(".job-progress .status")).to_have_text("Finished: every member done")
    expect(page.get_by_label("1,000 of 1,000 members processed")).to_have_attribute("value", "1000")
    outcomes = page.locator("table.outcomes tbody tr")
    expect(outcomes).to_have_count(1)
    expect(outcomes.locator("th")).to_have_text("Done: now Developer")
    expect(outcomes.locator("td")).to_have_text("1,000")
    results = page.locator("table.results tbody tr")
    expect(results).to_have_count(100)  # the first page of results
    expect(results.first.locator("th")).to_have_text(re.compile(rf"^Member (\d+)member\1@{re.escape(domain)}$"))
    expect(results.locator("td:last-child")).to_have_text(["Done: now Developer"] * 100)
    expect(page.get_by_role("link", name="Cancel the job")).to_have_count(0)
    axe_check(page)
    if store.startswith("sqlite"):
        screenshot(page, "bulk-job.png")
    fits_375_px_wide(page, axe_check, "bulk-job-375px.png" if store.startswith("sqlite") else None, "table.outcomes")
    assert holding(server, owner, org, "Developer") == MEMBERS
    assert holding(server, owner, org, "Viewer") == 0

    # The list of jobs
    page.get_by_role("link", name="All bulk jobs").click()
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    expect(page.locator("table.jobs tbody tr")).to_contain_text("1,000 of 1,000")
    axe_check(page)


def test_ticked_rows_are_removed_after_a_confirmation_and_the_results_name_them(
    live_server: Callable[..., LiveServer],
    settings_for: Callable[..., Settings],
    store: str,
    page: Page,
    axe_check: Callable[..., None],
) -> None:
    owner, domain = owner_and_domain()
    org = seed(settings_for(store), owner, domain, 3)
    server = live_server()
    caught_up(server, owner, org, 3)
    sign_in(page, server, owner)

    # Ticked in the table, the boxes belong to the form above it (form="bulk"): two members and the Owner herself
    for name in ("Member 0", "Member 2", "Olivia Owner"):
        page.get_by_label(f"Select {name}", exact=True).check()
    page.get_by_label("Action").select_option(label="Remove from the organization")
    page.get_by_role("button", name="Apply to members").click()

    # Asked first, then removed
    expect(page.get_by_role("heading", level=1)).to_have_text("Remove 3 members?")
    axe_check(page)
    page.get_by_role("button", name="Remove 3 members").click()
    page.wait_for_url(re.compile(rf"{re.escape(server.url)}/settings/jobs/[0-9a-f-]{{36}}$"))
    expect(page.locator(".job-progress .status")).to_have_text(
        "Finished: some members were not changed", timeout=JOB_TIMEOUT_S * 1000
    )
    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(3)
    said = {" ".join(row.locator("th").inner_text().split()): row.locator("td").last.inner_text() for row in rows.all()}
    assert said == {
        f"Olivia Owner {owner.email}": "Skipped: this is you (a bulk job never changes the person who started it)",
        f"member0@{domain}": "Removed",
        f"member2@{domain}": "Removed",
    }, said
    axe_check(page)
    page.get_by_role("link", name="Only those not done").click()
    expect(page.locator("table.results tbody tr")).to_have_count(1)
    listed = server.api("GET", "/api/members", owner, str(org)).json()["members"]
    assert sorted(member["email"] for member in listed) == sorted([owner.email, f"member1@{domain}"])
