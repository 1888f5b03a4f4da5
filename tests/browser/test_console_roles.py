"""Custom roles in a real Chromium (issue 15): the Owner signs in with the development form, creates the role
"QA" with the permission grid (by keyboard), gives it to a member on the Members page, and that member's next
page load shows it; deleting the role is refused while someone holds it, on the page and when forged.

axe-core checks every page met; the roles page is also checked 375 px wide. Screenshots go to
tests/browser/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.browser.conftest import BROWSER_TIMEOUT_MS, LiveServer, LiveServers, SmtpInbox, receiving_mail
from tests.browser.test_accept_flows import heading, sign_in_with_development_form, visit
from tests.e2e.conftest import User
from tests.factories import new_actor

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).parent / "screenshots"
NARROW: ViewportSize = {"width": 375, "height": 800}


@pytest.fixture(scope="module")
def inbox() -> Iterator[SmtpInbox]:
    with receiving_mail() as received:
        yield received


@pytest.fixture(scope="module")
def dev_site(tmp_path_factory: pytest.TempPathFactory, inbox: SmtpInbox) -> Iterator[LiveServer]:
    """The embedded default: no issuer, listening on loopback, so the development form."""
    directory: Path = tmp_path_factory.mktemp("console-roles")
    servers = LiveServers(f"sqlite:///{directory / 'roles.db'}", directory, inbox)
    try:
        yield servers.start()
    finally:
        servers.stop_all()


def signing_in_person(label: str) -> User:
    """Someone no other test uses, as the development form signs them in (user id `dev:<e-mail>`)."""
    made = new_actor(label)
    return User(f"dev:{made.email}", made.email, made.name)


def call(server: LiveServer, user: User, method: str, path: str, org: str | None = None, json: object = None) -> dict:
    response = server.api(method, path, user, org, json=json)
    assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text}"
    return dict(response.json())


def organization_with_member(server: LiveServer, owner: User, member: User) -> tuple[str, str]:
    """An organization of `owner` (its id and name) which `member` joined as a Viewer, through the API."""
    name = f"Roles {owner.email.split('.')[1][:6]}"
    org = call(server, owner, "POST", "/api/organizations", json={"name": name})["id"]
    roles = {role["name"]: role["id"] for role in call(server, owner, "GET", "/api/roles", org)["roles"]}
    link = call(server, owner, "POST", "/api/invite-links", org, {"roleId": roles["Viewer"], "maxUses": 1})
    call(server, member, "POST", "/api/auth/accept-invite-link", json={"code": link["url"].rsplit("/", 1)[1]})
    return org, name


@pytest.fixture
def other_page(browser: Browser) -> Iterator[Page]:
    """A second person's browser (a context of its own)."""
    context = browser.new_context()
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, server: LiveServer, user: User, path: str) -> None:
    visit(page, f"{server.url}/auth/login?next={path}")
    sign_in_with_development_form(page, user)
    page.wait_for_url(f"{server.url}{path}")


def expect_flash(page: Page, text: str) -> None:
    expect(page.locator("p.flash").filter(has_text=text)).to_have_count(1)


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def fits_375_px_wide(page: Page, axe_check: Callable[..., None], name: str) -> None:
    """375 px wide, the page stays within the screen (a wide table scrolls in its own box) and passes axe."""
    size = page.viewport_size
    page.set_viewport_size(NARROW)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"], page.url
        axe_check(page)
        screenshot(page, name)
    finally:
        if size is not None:
            page.set_viewport_size(size)


def test_the_owner_creates_a_custom_role_gives_it_to_a_member_and_cannot_delete_it_while_held(
    dev_site: LiveServer, page: Page, other_page: Page, axe_check: Callable[..., None]
) -> None:
    owner, ann = signing_in_person("owner"), signing_in_person("ann")
    org, org_name = organization_with_member(dev_site, owner, ann)
    # Ann looks at the members page as a Viewer; her next page load, later, shows her new role
    ann_page = other_page
    sign_in(ann_page, dev_site, ann, "/settings/members")
    expect(ann_page.get_by_role("main")).to_contain_text("You are Viewer.")

    # The Owner signs in with the development form and opens Roles from the menu
    visit(page, f"{dev_site.url}/auth/login?next=/settings/members")
    sign_in_with_development_form(page, owner, axe_check)
    page.wait_for_url(f"{dev_site.url}/settings/members")
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Roles").click()
    page.wait_for_url(f"{dev_site.url}/settings/roles")
    assert heading(page) == "Roles"
    rows = page.locator("table.roles tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.locator("th")).to_contain_text(["Owner", "Admin", "Developer", "Viewer"])
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)  # system roles are read-only
    axe_check(page)

    # The grid, by keyboard: QA may view members and manage deployments
    page.get_by_role("link", name="Create role").click()
    assert heading(page) == "Create role"
    axe_check(page)
    page.get_by_label("Name", exact=True).fill("QA")
    page.get_by_label("Description").fill("Checks releases before they ship")
    page.get_by_label("View members").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")  # the next box: Manage members
    page.keyboard.press("Tab")  # View roles
    expect(page.get_by_label("View roles")).to_be_focused()
    page.get_by_label("Manage deployments").focus()
    page.keyboard.press("Space")
    expect(page.get_by_label("View members")).to_be_checked()
    expect(page.get_by_label("Manage deployments")).to_be_checked()
    expect(page.get_by_label("Manage members")).not_to_be_checked()
    fits_375_px_wide(page, axe_check, "roles-create-form-375px.png")
    page.get_by_role("button", name="Create role").click()

    # Listed, with what it allows (manage brings view) and nobody holding it yet
    page.wait_for_url(f"{dev_site.url}/settings/roles")
    expect_flash(page, "The role QA was created.")
    qa = page.locator("table.roles tbody tr").filter(has=page.locator("th", has_text="QA"))
    expect(qa).to_contain_text("View members")
    expect(qa).to_contain_text("Create, change and delete deployments")
    expect(qa.get_by_role("link", name="0 members with the role QA")).to_have_count(1)
    expect(qa.get_by_role("link", name="Edit QA")).to_have_count(1)
    axe_check(page)
    screenshot(page, "roles.png")

    fits_375_px_wide(page, axe_check, "roles-375px.png")

    # The Owner gives QA to Ann on the Members page
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Members").click()
    page.get_by_label(f"Role of {ann.name}").select_option(label="QA")
    page.get_by_role("button", name=f"Change role of {ann.name}").click()
    page.wait_for_url(f"{dev_site.url}/settings/members")
    expect_flash(page, "The member's role was changed.")
    axe_check(page)

    # Ann's next page load shows her new rights: she is QA, and may not change roles
    ann_page.reload()
    expect(ann_page.get_by_role("main")).to_contain_text("You are QA.")
    visit(ann_page, f"{dev_site.url}/settings/roles")
    expect(ann_page.get_by_role("link", name="Create role")).to_have_count(0)
    expect(ann_page.get_by_role("link", name="Edit QA")).to_have_count(0)
    axe_check(ann_page)

    # Deleting QA while Ann holds it: the confirmation says why and offers no button
    visit(page, f"{dev_site.url}/settings/roles")
    page.get_by_role("link", name="Delete QA").click()
    assert heading(page) == "Give its members another role first"
    expect(page.get_by_role("main")).to_contain_text("1 member holds the role QA")
    expect(page.get_by_role("button", name="Delete role")).to_have_count(0)
    axe_check(page)
    # ... and a forged post with a good CSRF token is refused by the domain, in words
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = page.request.post(page.url, form={"csrf_token": token or ""}, max_redirects=0)
    assert forged.status == 303
    visit(page, f"{dev_site.url}/settings/roles")
    expect_flash(page, "Members hold this role; give them another role first.")
    expect(page.locator("table.roles tbody tr").filter(has=page.locator("th", has_text="QA"))).to_have_count(1)
    roles = call(dev_site, owner, "GET", "/api/roles", org)["roles"]
    assert [(r["name"], r["memberCount"]) for r in roles if r["name"] == "QA"] == [("QA", 1)], (org_name, roles)
