"""Access review and a member's history in a real Chromium (issue 16): the Owner opens them from the menu and
the Members page, the review's CSV link works, and axe-core finds no serious violation, also 375 px wide."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer
from tests.browser.test_accept_flows import heading
from tests.browser.test_console_roles import fits_375_px_wide, organization_with_member, sign_in, signing_in_person

pytestmark = pytest.mark.browser


def test_the_owner_reviews_who_could_manage_members_and_reads_a_members_history(
    live_server: Callable[..., LiveServer], page: Page, axe_check: Callable[..., None]
) -> None:
    server = live_server()
    owner, ann = signing_in_person("owner"), signing_in_person("ann")
    org, _ = organization_with_member(server, owner, ann)
    sign_in(page, server, owner, f"/settings/members?org={org}")

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Access review").click()
    assert heading(page) == "Access review"
    today = datetime.now(UTC).date().isoformat()
    page.get_by_label("From").fill(today)
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_role("main")).to_contain_text("1 person held manage:members")
    axe_check(page)
    fits_375_px_wide(page, axe_check, "access-review-375px.png")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV file of this review").click()
    assert download.value.suggested_filename.startswith("access-review-manage-members-")

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Members").click()
    page.get_by_role("link", name=f"History of {ann.name}").click()
    assert heading(page) == f"History of {ann.name}"
    expect(page.get_by_role("main")).to_contain_text(f"invite link by {owner.email}")
    axe_check(page)
