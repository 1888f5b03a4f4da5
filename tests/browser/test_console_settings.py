"""Organization settings in a real Chromium (issue 15), on both stores: the Owner renames the organization and
then deletes it by typing its name; a member's next page load shows it gone. axe-core checks the page, also
375 px wide. Screenshots go to tests/browser/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import BOTH_STORES, BROWSER_TIMEOUT_MS, LiveServer
from tests.browser.test_accept_flows import heading
from tests.browser.test_console_roles import (
    call,
    expect_flash,
    fits_375_px_wide,
    organization_with_member,
    screenshot,
    sign_in,
    signing_in_person,
)

pytestmark = pytest.mark.browser


@BOTH_STORES
def test_the_owner_renames_then_deletes_an_organization_by_typing_its_name(
    live_server: Callable[..., LiveServer], store: str, browser: Browser, page: Page, axe_check: Callable[..., None]
) -> None:
    server = live_server()
    owner, ann = signing_in_person("owner"), signing_in_person("ann")
    kept = call(server, owner, "POST", "/api/organizations", json={"name": "Kept <i>on</i>"})["id"]
    doomed, name = organization_with_member(server, owner, ann)

    # The Owner opens the organization's settings from the menu
    sign_in(page, server, owner, f"/settings/members?org={doomed}")
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Organization").click()
    page.wait_for_url(f"{server.url}/settings/organization")
    assert heading(page) == "Organization settings"
    axe_check(page)
    fits_375_px_wide(page, axe_check, "organization-settings-375px.png")

    # Rename: the switcher and the audit log say the new name
    page.get_by_label("Organization name").fill(f"{name} & Co")
    page.get_by_role("button", name="Rename").click()
    expect_flash(page, "The organization was renamed.")
    expect(page.get_by_label("Organization", exact=True).locator("option[selected]")).to_have_text(f"{name} & Co")
    page.goto(f"{server.url}/settings/audit-log")
    expect(page.get_by_role("main")).to_contain_text(f"renamed the organization from {name} to {name} & Co")

    # Delete: a wrong name is refused in words; the right one deletes it and lands in the other organization
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Organization").click()
    page.get_by_label("to confirm").fill(name)
    page.get_by_role("button", name="Delete this organization").click()
    expect_flash(page, "exactly as shown")
    if store.startswith("sqlite"):
        screenshot(page, "organization-settings.png")
    page.get_by_label("to confirm").fill(f"{name} & Co")
    page.get_by_role("button", name="Delete this organization").click()
    page.wait_for_url(f"{server.url}/settings/members")
    expect_flash(page, f"The organization {name} & Co was deleted.")
    expect(page.get_by_label("Organization", exact=True).locator("option")).to_have_text(["Kept <i>on</i>"])
    assert call(server, owner, "GET", "/api/organizations")["organizations"][0]["id"] == kept

    # Ann's next page load: no organization any more
    context = browser.new_context()
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        ann_page = context.new_page()
        sign_in(ann_page, server, ann, "/settings/members")
        assert heading(ann_page) == "You are not in any organization yet"
    finally:
        context.close()
