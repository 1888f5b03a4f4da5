"""The audit log in a real Chromium against `membership serve` with the development sign-in of the embedded
default (and on PostgreSQL): the Owner creates an organization, invites from the page, the invitee joins from
the e-mailed link, the Owner changes their role on the Members page; then Settings > Audit log tells each step
as a sentence, filters by type and actor, and exports what it shows. axe-core checks the page, at 375 px too;
without JavaScript it works the same. A screenshot is kept in tests/browser/screenshots/audit-log.png.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import BOTH_STORES, BROWSER_TIMEOUT_MS, LiveServer, SmtpInbox
from tests.browser.test_accept_flows import emailed_link, heading
from tests.browser.test_console_invitations import (
    dev_user,
    fits_narrow_screen,
    join_from,
    open_section,
    row,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.browser


@BOTH_STORES
def test_the_audit_log_tells_each_step_taken_on_the_pages_as_a_sentence(
    live_server: Callable[..., LiveServer],
    smtp_inbox: SmtpInbox,
    page: Page,
    browser: Browser,
    axe_check: Callable[..., None],
    store: str,
    tmp_path: Path,
) -> None:
    server = live_server()
    owner, bob = dev_user("owner"), dev_user("bob")
    team = f"Audited {owner.email[6:12]}"

    # The Owner signs in, creates the organization and invites Bob as a Developer, all on the pages
    sign_in(page, server, owner)
    page.get_by_label("Name").fill(team)
    page.get_by_role("button", name="Create organization").click()
    page.get_by_role("link", name="Invite Member").click()
    page.get_by_label("Email").fill(bob.email)
    page.get_by_label("Role").select_option(label="Developer")
    page.get_by_role("button", name="Send Invitation").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Invitations")

    # Bob joins from the e-mailed link, in his own browser
    bobs_browser = browser.new_context()
    bobs_browser.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        join_from(
            bobs_browser.new_page(), emailed_link(smtp_inbox, bob, server), server, bob, "Accept invitation", team
        )
    finally:
        bobs_browser.close()

    # The Owner makes him an Admin on the Members page
    open_section(page, "Members")
    bobs_row = row(page, bob.email)
    bobs_row.get_by_role("combobox").select_option(label="Admin")
    bobs_row.get_by_role("button", name="Change role").click()
    expect(page.get_by_role("status").filter(has_text="The member's role was changed.")).to_be_visible()

    # Settings > Audit log: every step, newest first
    open_section(page, "Audit log")
    steps = [
        f"{owner.email} changed {bob.email}'s role from Developer to Admin",
        f"{bob.email} accepted the invitation and joined as Developer",
        f"the mailer sent the invitation e-mail to {bob.email}",
        f"{owner.email} invited {bob.email} as Developer",
        f"{owner.email} joined as Owner on creating the organization",
        f"{owner.email} created the organization {team}",
    ]
    said = page.locator("table.audit tbody td.said")
    expect(said).to_have_count(len(steps))
    for shown, step in zip(said.all(), steps, strict=True):
        expect(shown).to_contain_text(step)
    expect(page.locator("table.audit tbody time").first).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    axe_check(page)
    if store.startswith("sqlite"):
        screenshot(page, "audit-log.png")

    # Filters: a type, then an actor (the form keeps what was chosen)
    page.get_by_label("Type").select_option(label="Role changed")
    page.get_by_role("button", name="Filter").click()
    expect(said).to_have_count(1)
    expect(said.first).to_contain_text(steps[0])
    expect(page.get_by_label("Type")).to_have_value("RoleChanged")
    page.get_by_label("Type").select_option(label="Any type")
    page.get_by_label("Actor").fill(bob.email)
    page.get_by_role("button", name="Filter").click()
    expect(said).to_have_count(1)
    expect(said.first).to_contain_text(steps[1])

    # A day that cannot be is said beside the form
    page.get_by_label("Actor").fill("")
    page.get_by_label("Since").fill("2030-01-02")
    page.get_by_label("Until").fill("2030-01-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("Since must be on or before Until.")
    axe_check(page)

    # The export of the whole log, as a file
    page.get_by_role("link", name="Clear filters").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV file of the audit log").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.startswith("audited-") and saved.suffix == ".csv", saved.name
    exported = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [r["type"] for r in exported][-1] == "RoleChanged" and exported[-1]["targetLabel"] == bob.email

    # At 375 px the page fits and stays accessible
    fits_narrow_screen(page)
    axe_check(page)


def test_the_audit_log_works_without_javascript(live_server: Callable[..., LiveServer], browser: Browser) -> None:
    server = live_server()
    owner = dev_user("owner")
    team = f"No script {owner.email[6:12]}"
    created = server.api("POST", "/api/organizations", owner, json={"name": team})
    assert created.status_code == 201, created.text
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        page = context.new_page()
        sign_in(page, server, owner, "/settings/audit-log")
        assert heading(page) == "Audit log"
        page.get_by_label("Type").select_option(label="Organization created")
        page.get_by_role("button", name="Filter").click()
        said = page.locator("table.audit tbody td.said")
        expect(said).to_have_count(1)
        expect(said).to_contain_text(f"{owner.email} created the organization {team}")  # axe needs scripts: above
    finally:
        context.close()
