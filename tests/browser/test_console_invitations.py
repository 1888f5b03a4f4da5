"""The guide's invitation flows from the console, in a real Chromium against `membership serve` with the
development sign-in of the embedded default (and on PostgreSQL): the Owner clicks "Invite Member", fills Email
and Role, clicks "Send Invitation" and sees it under Invitations; the invitee opens the e-mailed link, signs in
and accepts; the Owner's Members page lists them with the role. An invite link made on the page is copied and
joined with; invitations are resent and cancelled from the page. axe-core checks every console page met.

Screenshots of the members and invitations pages are kept in tests/browser/screenshots/ (CI artefacts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect

from membership import Actor
from tests.browser.conftest import BOTH_STORES, BROWSER_TIMEOUT_MS, LiveServer, LiveServers, SmtpInbox, receiving_mail
from tests.browser.test_accept_flows import (
    emailed_link,
    expect_signed_in_as,
    heading,
    sign_in_with_development_form,
    visit,
)
from tests.factories import new_actor

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).parent / "screenshots"
NARROW: ViewportSize = {"width": 375, "height": 812}


# -- one server for the module (the guide's flow starts its own, on each store) -------------------------------
@pytest.fixture(scope="module")
def inbox() -> Iterator[SmtpInbox]:
    with receiving_mail() as received:
        yield received


@pytest.fixture(scope="module")
def dev_site(tmp_path_factory: pytest.TempPathFactory, inbox: SmtpInbox) -> Iterator[LiveServer]:
    directory: Path = tmp_path_factory.mktemp("console-invitations")
    servers = LiveServers(f"sqlite:///{directory / 'console.db'}", directory, inbox)
    try:
        yield servers.start()
    finally:
        servers.stop_all()


@pytest.fixture
def another_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Call it for a page in a browser context of its own (another person's browser), closed after the test."""
    contexts: list[BrowserContext] = []

    def open_page() -> Page:
        context = browser.new_context()
        context.set_default_timeout(BROWSER_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


# -- what people do -------------------------------------------------------------------------------------------
def dev_user(label: str) -> Actor:
    """Someone the development sign-in makes of an e-mail address (their user id is dev:<address>)."""
    person = new_actor(label)
    return Actor(f"dev:{person.email}", person.email, person.name)


@dataclass
class Team:
    server: LiveServer
    owner: Actor
    id: str
    name: str


def team_of(server: LiveServer, label: str) -> Team:
    """An organization whose Owner will sign in with the development form (made through the API, quicker)."""
    owner = dev_user("owner")
    name = f"{label} {owner.email[6:12]}"
    created = server.api("POST", "/api/organizations", owner, json={"name": name})
    assert created.status_code == 201, created.text
    return Team(server, owner, created.json()["id"], name)


def sign_in(page: Page, server: LiveServer, user: Actor, path: str = "/settings/members") -> None:
    visit(page, f"{server.url}{path}")
    sign_in_with_development_form(page, user)
    page.wait_for_url(f"{server.url}{path}*")
    expect_signed_in_as(page, user)


def open_section(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Settings").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)


def row(page: Page, text: str) -> Locator:
    return page.get_by_role("row").filter(has_text=text)


def join_from(page: Page, url: str, server: LiveServer, person: Actor, button: str, team_name: str) -> None:
    """Open an invitation's or link's URL signed out, sign in on the way, and accept."""
    visit(page, url)
    assert heading(page) == f"Join {team_name}"
    page.get_by_role("link", name="Sign in to accept" if "/invite/" in url else "Sign in to join").click()
    sign_in_with_development_form(page, person)
    page.wait_for_url(url)
    page.get_by_role("button", name=button).click()
    page.wait_for_url(f"{server.url}/joined/*")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"You joined {team_name}")


def fits_narrow_screen(page: Page) -> None:
    """At 375 px the page scrolls only vertically (wide tables scroll inside their own box)."""
    page.set_viewport_size(NARROW)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{page.url} is {overflow} px wider than a 375 px screen"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


# -- the guide ------------------------------------------------------------------------------------------------
@BOTH_STORES
def test_the_owner_invites_from_the_page_and_the_invitee_joins_from_the_emailed_link(
    live_server: Callable[..., LiveServer],
    smtp_inbox: SmtpInbox,
    page: Page,
    another_page: Callable[[], Page],
    axe_check: Callable[..., None],
    store: str,
) -> None:
    server = live_server()
    owner, bob = dev_user("owner"), dev_user("bob")
    team = f"Acme {owner.email[6:12]}"

    # The Owner signs in and creates the organization from the page
    sign_in(page, server, owner)
    assert heading(page) == "You are not in any organization yet"
    axe_check(page)
    page.get_by_label("Name").fill(team)
    page.get_by_role("button", name="Create organization").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")
    expect(page.locator("p.lead")).to_contain_text(team)

    # "Navigate to Settings > Members and click Invite Member"
    page.get_by_role("link", name="Invite Member").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Invite Member")
    axe_check(page)
    # "Enter the invitee's email address and select a role to assign. Click Send Invitation."
    page.get_by_label("Email").fill(bob.email)
    page.get_by_label("Role").select_option(label="Developer")
    expect(page.get_by_label("Expires in (days)")).to_have_value("7")
    page.get_by_role("button", name="Send Invitation").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Invitations")
    expect(page.get_by_role("status").filter(has_text=f"The invitation to {bob.email} was sent.")).to_be_visible()
    invited = row(page, bob.email)
    expect(invited).to_contain_text("Developer")
    expect(invited).to_contain_text("Pending")
    expect(invited).to_contain_text(f"by {owner.email}")
    axe_check(page)
    link = emailed_link(smtp_inbox, bob, server)
    page.reload()
    expect(row(page, bob.email)).to_contain_text("Sent")
    if store.startswith("sqlite"):
        screenshot(page, "invitations.png")

    # The invitee opens the e-mailed link, signs in and accepts
    join_from(another_page(), link, server, bob, "Accept invitation", team)

    # The Owner's Members page lists them with the role
    open_section(page, "Members")
    expect(row(page, bob.email)).to_contain_text("Developer")
    axe_check(page)
    if store.startswith("sqlite"):
        screenshot(page, "members.png")
    fits_narrow_screen(page)
    open_section(page, "Invitations")
    expect(row(page, bob.email)).to_have_count(0)  # no longer pending
    page.get_by_label("Status").select_option(label="Accepted")
    page.get_by_role("button", name="Show").click()
    expect(row(page, bob.email)).to_contain_text("Accepted")
    fits_narrow_screen(page)
    if store.startswith("sqlite"):
        screenshot(page, "invitations-375px.png")
    axe_check(page)


# -- invite links ----------------------------------------------------------------------------------------------
def test_an_invite_link_made_on_the_page_is_copied_joined_with_counted_and_deleted_after_confirming(
    dev_site: LiveServer, page: Page, another_page: Callable[[], Page], axe_check: Callable[..., None]
) -> None:
    team = team_of(dev_site, "Linked")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dev_site.url)
    sign_in(page, dev_site, team.owner)
    open_section(page, "Invite links")
    expect(page.get_by_role("main")).to_contain_text("No invite link yet.")
    axe_check(page)

    page.get_by_label("Role").select_option(label="Viewer")
    page.get_by_label("Max uses (0 = unlimited)").fill("1")
    page.get_by_label("Expires in (days)").fill("2")
    page.get_by_role("button", name="Create invite link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your new invite link")
    address = page.get_by_label("Invite link")
    url = address.input_value()
    assert url.startswith(f"{dev_site.url}/join/"), url
    expect(address).to_have_attribute("readonly", "")
    axe_check(page)
    page.get_by_role("button", name="Copy the invite link").click()  # shown by web/static/copy.js
    expect(page.get_by_role("status").filter(has_text="Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    fits_narrow_screen(page)  # and what follows happens on a 375 px screen
    page.reload()  # shown once
    expect(page.get_by_role("heading", level=1)).to_have_text("Invite links")
    expect(page.get_by_role("main")).not_to_contain_text("/join/")
    expect(row(page, "Viewer")).to_contain_text("0 of 1")

    # Someone else opens it, signs in and joins; the link is then used up
    lee = dev_user("lee")
    lee_page = another_page()
    join_from(lee_page, url, dev_site, lee, f"Join {team.name}", team.name)
    page.reload()
    expect(row(page, "Viewer")).to_contain_text("1 of 1")
    expect(row(page, "Viewer")).to_contain_text("Used up")
    open_section(page, "Members")
    expect(row(page, lee.email)).to_contain_text("Viewer")

    # As a Viewer, Lee sees neither the Invite Member button nor the lists
    visit(lee_page, f"{dev_site.url}/settings/members")
    expect(lee_page.get_by_role("link", name="Invite Member")).to_have_count(0)
    visit(lee_page, f"{dev_site.url}/settings/invite-links", 403)
    expect(lee_page.get_by_role("main")).to_contain_text("needs the permission to manage members")
    axe_check(lee_page)

    # Deleting asks first
    open_section(page, "Invite links")
    page.get_by_role("link", name="Delete the Viewer link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete this Viewer invite link?")
    axe_check(page)
    page.get_by_role("link", name="Cancel").click()
    expect(row(page, "Viewer")).to_have_count(1)
    page.get_by_role("link", name="Delete the Viewer link").click()
    page.get_by_role("button", name="Delete invite link").click()
    expect(page.get_by_role("status").filter(has_text="The invite link was deleted")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("No invite link yet.")
    visit(another_page(), url, 410)


# -- resend and cancel -----------------------------------------------------------------------------------------
def test_resend_and_cancel_from_the_invitations_page(
    dev_site: LiveServer, inbox: SmtpInbox, page: Page, another_page: Callable[[], Page], axe_check: Callable[..., None]
) -> None:
    team = team_of(dev_site, "Resend")
    fay, gus = dev_user("fay"), dev_user("gus")
    developer = next(r["id"] for r in dev_site.api("GET", "/api/roles", team.owner, team.id).json()["roles"]
                     if r["name"] == "Developer")  # fmt: skip
    for person in (fay, gus):
        invited = dev_site.api(
            "POST", "/api/members/invite", team.owner, team.id, json={"email": person.email, "roleId": developer}
        )
        assert invited.status_code == 201, invited.text
    first_link, gus_link = emailed_link(inbox, fay, dev_site), emailed_link(inbox, gus, dev_site)

    sign_in(page, dev_site, team.owner)
    open_section(page, "Invitations")
    axe_check(page)
    page.get_by_role("button", name=f"Resend the invitation to {fay.email}").click()
    expect(page.get_by_role("status").filter(has_text="The invitation was sent again")).to_be_visible()
    expect(row(page, fay.email)).to_contain_text("sent again 1 time")
    second_link = emailed_link(inbox, fay, dev_site)
    assert second_link != first_link

    page.get_by_role("button", name=f"Cancel the invitation to {gus.email}").click()
    expect(page.get_by_role("status").filter(has_text="The invitation was cancelled")).to_be_visible()
    expect(row(page, gus.email)).to_have_count(0)
    page.get_by_label("Status").select_option(label="Cancelled")
    page.get_by_role("button", name="Show").click()
    expect(row(page, gus.email)).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name=f"Resend the invitation to {gus.email}")).to_have_count(0)
    axe_check(page)

    invitee = another_page()
    visit(invitee, first_link, 410)
    assert heading(invitee) == "This invitation was replaced by a newer one"
    visit(invitee, gus_link, 410)
    assert heading(invitee) == "This invitation was cancelled"
    join_from(invitee, second_link, dev_site, fay, "Accept invitation", team.name)


def test_without_javascript_the_new_links_address_is_there_to_select_and_no_dead_copy_button_shows(
    dev_site: LiveServer, browser: Browser, axe_check: Callable[..., None]
) -> None:
    team = team_of(dev_site, "NoScript")
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        page = context.new_page()
        sign_in(page, dev_site, team.owner, "/settings/invite-links")
        page.get_by_role("button", name="Create invite link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Your new invite link")
        expect(page.get_by_label("Invite link")).to_have_value(re.compile(rf"^{re.escape(dev_site.url)}/join/\S+$"))
        expect(page.get_by_role("button", name="Copy the invite link")).to_have_count(0)  # hidden: nothing to click
        expect(page.get_by_role("main")).to_contain_text("Select the address and copy it")
    finally:
        context.close()
