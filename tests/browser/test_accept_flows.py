"""Joining in a real Chromium (issue 14): an Owner invites through the API, the invitee opens the link of
the e-mail the server sent, signs in (at a real OpenID Connect provider, or with the development form of the
embedded default), accepts, and the API lists them as a member with the role. Then what must go wrong
safely: another account, closed and forged invitations, `next` off-site, a form without its CSRF token, the
development form on a server with an issuer; and API tokens of the provider across a rotation of its key.

Every page type met is checked by axe-core. An expired invitation is not met here: the server's clock is
real and invitations last days (tests/web/test_accept_pages.py expires one with a controlled clock).

Most tests share two SQLite servers of this module (one with the provider, one with the development form)
and tell their data apart by unique people and organizations. The test on both stores, and the one that
rotates the provider's key, start a provider and a server of their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    BOTH_STORES,
    LiveServer,
    LiveServers,
    OidcProvider,
    SmtpInbox,
    receiving_mail,
    running_oidc_provider,
)
from tests.e2e.conftest import User
from tests.factories import new_actor

pytestmark = pytest.mark.browser
ACCEPT_LINK = re.compile(r"https?://\S+/invite/accept\?token=\S+")
OFF_SITE = ["https://evil.example/", "//evil.example/", "/\\evil.example/"]
JWKS_REFRESH_S = 0.1


# -- two servers for the module, and the provider and inbox they use -------------------------------------------
@pytest.fixture(scope="module")
def inbox() -> Iterator[SmtpInbox]:
    with receiving_mail() as received:
        yield received


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with running_oidc_provider() as running:
        yield running


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, inbox: SmtpInbox) -> Iterator[LiveServers]:
    directory: Path = tmp_path_factory.mktemp("accept-flows")
    started = LiveServers(f"sqlite:///{directory / 'unused.db'}", directory, inbox)  # each site names its own
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def oidc_site(servers: LiveServers, provider: OidcProvider) -> LiveServer:
    """Signing in at `provider`."""
    return servers.start(f"sqlite:///{servers.directory / 'oidc.db'}", env=provider.server_env)


@pytest.fixture(scope="module")
def dev_site(servers: LiveServers) -> LiveServer:
    """The embedded default: no issuer, listening on loopback, so the development form."""
    return servers.start(f"sqlite:///{servers.directory / 'dev.db'}")


# -- arranging through the API ---------------------------------------------------------------------------------
@dataclass
class Organization:
    server: LiveServer
    owner: User
    id: str
    name: str
    roles: dict[str, str]  # name -> id

    def call(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        response = self.server.api(method, path, self.owner, self.id, json=json)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def invite(self, email: str, role: str = "Developer") -> dict[str, Any]:
        return dict(self.call("POST", "/api/members/invite", {"email": email, "roleId": self.roles[role]}, 201))

    def members(self) -> dict[str, tuple[str, str]]:
        """E-mail -> (user id, role name) of every member."""
        listed = self.call("GET", "/api/members?limit=100")["members"]
        return {m["email"]: (m["userId"], m["role"]["name"]) for m in listed}

    def pending_invitations(self) -> list[str]:
        return [i["email"] for i in self.call("GET", "/api/invitations?status=pending")["invitations"]]


def new_organization(server: LiveServer, label: str) -> Organization:
    owner = new_actor("owner")
    name = f"{label} {owner.user_id[-6:]}"
    created = server.api("POST", "/api/organizations", owner, json={"name": name})
    assert created.status_code == 201, created.text
    org = created.json()["id"]
    roles = server.api("GET", "/api/roles", owner, org).json()["roles"]
    return Organization(server, owner, org, name, {role["name"]: role["id"] for role in roles})


def person(provider: OidcProvider | None, label: str) -> User:
    """Someone no other test uses; registered at `provider` (with a verified address) when there is one."""
    user = new_actor(label)
    if provider is not None:
        provider.add_user(user.user_id, email=user.email, email_verified=True, name=user.name)
    return user


def emailed_link(inbox: SmtpInbox, to: User, server: LiveServer) -> str:
    """The accept link of the next e-mail to `to`, which must lead to where the server listens."""
    text = inbox.wait_for_message(to.email, timeout=20).get_body(("plain",))
    assert text is not None
    found = ACCEPT_LINK.search(text.get_content())
    assert found, text.get_content()
    assert found.group(0).startswith(f"{server.url}/invite/accept?token="), found.group(0)
    return found.group(0)


# -- what a person does and sees -------------------------------------------------------------------------------
def visit(page: Page, url: str, status: int = 200) -> None:
    response = page.goto(url)
    assert response is not None and response.status == status, (url, response and response.status)


def heading(page: Page) -> str:
    return page.get_by_role("heading", level=1).inner_text()


def sign_in_at_provider(page: Page, provider: OidcProvider, user: User) -> None:
    page.wait_for_url(f"{provider.issuer}/oauth2/authorize?*")
    provider.sign_in_form(page, user.user_id)


def sign_in_with_development_form(page: Page, user: User, axe_check: Callable[..., None] | None = None) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    if axe_check is not None:
        axe_check(page)
    page.get_by_label("E-mail").fill(user.email)
    page.get_by_label("Name").fill(user.name)
    page.get_by_role("button", name="Sign in (development only)").click()


def expect_signed_in_as(page: Page, user: User) -> None:
    expect(page.locator("header")).to_contain_text(f"Signed in as {user.email}")


def accept_and_see_joined(page: Page, org: Organization, role: str, button: str = "Accept invitation") -> None:
    page.get_by_role("button", name=button).click()
    page.wait_for_url(f"{org.server.url}/joined/{org.id}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"You joined {org.name}")
    expect(page.get_by_role("main")).to_contain_text(f"You are a member with the role {role}")


def expect_refusal(page: Page, url: str, status: int, title: str, code: str) -> None:
    visit(page, url, status)
    assert heading(page) == title
    expect(page.locator("p.code")).to_have_text(f"Reference: {code}")


# -- joining ---------------------------------------------------------------------------------------------------
@BOTH_STORES
def test_an_invitee_joins_from_the_emailed_link_signing_in_at_the_identity_provider(
    live_server: Callable[..., LiveServer],
    oidc_provider: OidcProvider,
    smtp_inbox: SmtpInbox,
    page: Page,
    axe_check: Callable[..., None],
) -> None:
    server = live_server(env=oidc_provider.server_env)
    org = new_organization(server, "Acme")
    bob = person(oidc_provider, "bob")
    org.invite(bob.email, "Developer")
    link = emailed_link(smtp_inbox, bob, server)

    # Signed out, the invitation says what joining gives and offers to sign in
    visit(page, link)
    assert heading(page) == f"Join {org.name}"
    expect(page.locator("dl.offer")).to_contain_text(org.name)
    expect(page.locator("dl.offer")).to_contain_text("Developer")
    axe_check(page)
    page.get_by_role("link", name="Sign in to accept").click()

    # At the provider, then back on the invitation, signed in
    sign_in_at_provider(page, oidc_provider, bob)
    page.wait_for_url(link)
    expect_signed_in_as(page, bob)
    axe_check(page)

    accept_and_see_joined(page, org, "Developer")
    axe_check(page)
    assert org.members()[bob.email] == (bob.user_id, "Developer")


def test_an_invitee_joins_from_the_emailed_link_with_the_development_sign_in(
    dev_site: LiveServer, inbox: SmtpInbox, page: Page, axe_check: Callable[..., None]
) -> None:
    org = new_organization(dev_site, "Embedded")
    ann = person(None, "ann")
    org.invite(ann.email, "Developer")
    link = emailed_link(inbox, ann, dev_site)

    visit(page, link)
    assert heading(page) == f"Join {org.name}"
    page.get_by_role("link", name="Sign in to accept").click()
    sign_in_with_development_form(page, ann, axe_check)
    page.wait_for_url(link)
    expect_signed_in_as(page, ann)

    accept_and_see_joined(page, org, "Developer")
    assert org.members()[ann.email] == (f"dev:{ann.email}", "Developer")


def test_an_invite_link_joins_once_and_then_says_already_a_member(
    oidc_site: LiveServer, provider: OidcProvider, page: Page, axe_check: Callable[..., None]
) -> None:
    org = new_organization(oidc_site, "Linked")
    link = org.call("POST", "/api/invite-links", {"roleId": org.roles["Viewer"], "maxUses": 5, "expiresInDays": 1}, 201)
    assert link["url"].startswith(f"{oidc_site.url}/join/"), link["url"]
    lee = person(provider, "lee")

    visit(page, link["url"])
    assert heading(page) == f"Join {org.name}"
    axe_check(page)
    page.get_by_role("link", name="Sign in to join").click()
    sign_in_at_provider(page, provider, lee)
    page.wait_for_url(link["url"])
    axe_check(page)
    accept_and_see_joined(page, org, "Viewer", button=f"Join {org.name}")

    visit(page, link["url"])
    expect(page.get_by_role("heading", level=2)).to_have_text(f"You are already a member of {org.name}")
    expect(page.get_by_role("button", name=f"Join {org.name}")).to_have_count(0)
    assert org.members()[lee.email] == (lee.user_id, "Viewer")


# -- another account -------------------------------------------------------------------------------------------
def test_signed_in_with_another_address_the_page_names_the_invited_one_and_switching_account_comes_back(
    oidc_site: LiveServer, provider: OidcProvider, inbox: SmtpInbox, page: Page, axe_check: Callable[..., None]
) -> None:
    org = new_organization(oidc_site, "Switch")
    carol, dave = person(provider, "carol"), person(provider, "dave")
    org.invite(carol.email)
    link = emailed_link(inbox, carol, oidc_site)

    # Dave opens Carol's invitation and signs in as himself
    visit(page, link)
    page.get_by_role("link", name="Sign in to accept").click()
    sign_in_at_provider(page, provider, dave)
    page.wait_for_url(link)
    expect(page.get_by_role("heading", level=2)).to_have_text("This invitation is for another address")
    expect(page.get_by_role("main")).to_contain_text(f"It was sent to {carol.email}")
    expect(page.get_by_role("button", name="Accept invitation")).to_have_count(0)
    axe_check(page)
    assert org.pending_invitations() == [carol.email] and dave.email not in org.members()

    # Switching account ends the session at the provider too, then signs in again and comes back
    page.get_by_role("button", name="Switch account").click()
    page.wait_for_url(f"{provider.issuer}/**")
    page.get_by_role("button", name="End session").click()
    sign_in_at_provider(page, provider, carol)
    page.wait_for_url(link)
    expect_signed_in_as(page, carol)
    assert org.pending_invitations() == [carol.email]

    accept_and_see_joined(page, org, "Developer")
    assert set(org.members()) == {org.owner.email, carol.email}


# -- closed and forged invitations -----------------------------------------------------------------------------
def test_a_cancelled_invitation_says_so(
    dev_site: LiveServer, inbox: SmtpInbox, page: Page, axe_check: Callable[..., None]
) -> None:
    org = new_organization(dev_site, "Cancelled")
    eve = person(None, "eve")
    invitation = org.invite(eve.email)
    link = emailed_link(inbox, eve, dev_site)
    org.call("DELETE", f"/api/invitations/{invitation['id']}")

    expect_refusal(page, link, 410, "This invitation was cancelled", "invitation_cancelled")
    axe_check(page)


def test_the_link_of_an_invitation_sent_again_is_replaced_by_the_new_ones(
    dev_site: LiveServer, inbox: SmtpInbox, page: Page, axe_check: Callable[..., None]
) -> None:
    org = new_organization(dev_site, "Resent")
    fay = person(None, "fay")
    invitation = org.invite(fay.email)
    first = emailed_link(inbox, fay, dev_site)
    org.call("POST", f"/api/invitations/{invitation['id']}/resend")
    second = emailed_link(inbox, fay, dev_site)
    assert second != first

    expect_refusal(page, first, 410, "This invitation was replaced by a newer one", "invitation_replaced")
    axe_check(page)
    visit(page, second)
    assert heading(page) == f"Join {org.name}"


def test_an_accepted_invitation_cannot_be_accepted_again(
    dev_site: LiveServer, inbox: SmtpInbox, page: Page, axe_check: Callable[..., None]
) -> None:
    org = new_organization(dev_site, "Accepted")
    gil = person(None, "gil")
    org.invite(gil.email)
    link = emailed_link(inbox, gil, dev_site)
    visit(page, link)
    page.get_by_role("link", name="Sign in to accept").click()
    sign_in_with_development_form(page, gil)
    accept_and_see_joined(page, org, "Developer")

    expect_refusal(page, link, 410, "This invitation was already accepted", "invitation_already_accepted")
    axe_check(page)
    page.context.clear_cookies()  # and signed out alike
    expect_refusal(page, link, 410, "This invitation was already accepted", "invitation_already_accepted")


def test_a_forged_or_altered_invitation_link_is_not_valid(
    dev_site: LiveServer, inbox: SmtpInbox, page: Page, axe_check: Callable[..., None]
) -> None:
    org = new_organization(dev_site, "Forged")
    hal = person(None, "hal")
    org.invite(hal.email)
    link = emailed_link(inbox, hal, dev_site)
    altered = link[:-5] + ("A" if link[-5] != "A" else "B") + link[-4:]  # a character of the MAC

    expect_refusal(page, f"{dev_site.url}/invite/accept?token=forged", 404, "This invitation link is not valid",
                   "invalid_invitation_token")  # fmt: skip
    axe_check(page)
    expect_refusal(page, altered, 404, "This invitation link is not valid", "invalid_invitation_token")
    assert org.pending_invitations() == [hal.email]


# -- sign-in and forms cannot be turned against the person -----------------------------------------------------
@pytest.mark.parametrize("target", OFF_SITE)
def test_after_signing_in_at_the_provider_next_never_leaves_the_site(
    oidc_site: LiveServer, provider: OidcProvider, page: Page, target: str
) -> None:
    ivy = person(provider, "ivy")
    visit(page, f"{oidc_site.url}/auth/login?{urlencode({'next': target})}")
    sign_in_at_provider(page, provider, ivy)

    page.wait_for_url(f"{oidc_site.url}/auth/account")
    assert heading(page) == "You are signed in"
    expect_signed_in_as(page, ivy)


@pytest.mark.parametrize("target", OFF_SITE)
def test_after_the_development_sign_in_next_never_leaves_the_site(
    dev_site: LiveServer, page: Page, target: str
) -> None:
    jay = person(None, "jay")
    visit(page, f"{dev_site.url}/auth/login?{urlencode({'next': target})}")
    sign_in_with_development_form(page, jay)

    page.wait_for_url(f"{dev_site.url}/auth/account")
    assert heading(page) == "You are signed in"


def test_accepting_without_the_forms_csrf_token_is_refused_and_changes_nothing(
    dev_site: LiveServer, inbox: SmtpInbox, page: Page, axe_check: Callable[..., None]
) -> None:
    org = new_organization(dev_site, "Csrf")
    kim = person(None, "kim")
    org.invite(kim.email)
    link = emailed_link(inbox, kim, dev_site)
    token = link.split("token=", 1)[1]
    visit(page, link)
    page.get_by_role("link", name="Sign in to accept").click()
    sign_in_with_development_form(page, kim)
    page.wait_for_url(link)

    # The browser's session cookie goes along, but not the form's token (or a made-up one)
    forms: list[dict[str, str | float | bool]] = [{"token": token}, {"token": token, "csrf_token": "made-up"}]
    for form in forms:
        refused = page.request.post(f"{dev_site.url}/invite/accept", form=form, max_redirects=0)
        assert refused.status == 400 and "This form has expired" in refused.text()
    assert org.pending_invitations() == [kim.email] and kim.email not in org.members()

    page.set_content(refused.text())
    axe_check(page)
    visit(page, link)  # the page's own form, with its token, still works
    accept_and_see_joined(page, org, "Developer")


def test_the_development_sign_in_is_refused_when_an_issuer_is_set(
    oidc_site: LiveServer, provider: OidcProvider, page: Page
) -> None:
    lou, mallory = person(provider, "lou"), new_actor("mallory")

    # GET never shows the form: it leads to the provider
    visit(page, f"{oidc_site.url}/auth/login?next=/auth/account")
    assert page.url.startswith(f"{provider.issuer}/oauth2/authorize?")
    expect(page.get_by_label("E-mail")).to_have_count(0)

    # Signed out, a POST of the form (without a CSRF token: no page here offers one) signs nobody in
    refused = page.request.post(f"{oidc_site.url}/auth/login", form={"email": mallory.email, "name": "Mallory"})
    assert refused.status == 400
    nobody = page.request.get(f"{oidc_site.url}/auth/account", max_redirects=0)
    assert nobody.status == 303 and nobody.headers["location"].startswith("/auth/login")

    # Signed in, with the session's CSRF token, the form is not there at all
    sign_in_at_provider(page, provider, lou)
    page.wait_for_url(f"{oidc_site.url}/auth/account")
    csrf = page.locator("header input[name=csrf_token]").get_attribute("value")
    assert csrf
    posted = page.request.post(
        f"{oidc_site.url}/auth/login",
        form={"csrf_token": csrf, "email": mallory.email, "name": "Mallory", "next": "/auth/account"},
        max_redirects=0,
    )
    assert posted.status == 404
    visit(page, f"{oidc_site.url}/auth/account")
    expect_signed_in_as(page, lou)
    expect(page.get_by_role("main")).not_to_contain_text(mallory.email)


# -- the provider's tokens at the API, across a key rotation ---------------------------------------------------
def test_the_api_takes_the_providers_tokens_for_a_member_who_joined_in_the_browser_across_a_key_rotation(
    live_server: Callable[..., LiveServer], oidc_provider: OidcProvider, page: Page
) -> None:
    server = live_server(env={**oidc_provider.server_env, "MEMBERSHIP_JWKS_REFRESH_SECONDS": str(JWKS_REFRESH_S)})
    org = new_organization(server, "Rotation")
    link = org.call("POST", "/api/invite-links", {"roleId": org.roles["Viewer"], "maxUses": 1, "expiresInDays": 1}, 201)
    max_ = person(oidc_provider, "max")
    visit(page, link["url"])
    page.get_by_role("link", name="Sign in to join").click()
    sign_in_at_provider(page, oidc_provider, max_)
    accept_and_see_joined(page, org, "Viewer", button=f"Join {org.name}")

    def id_token() -> str:
        callback = f"{server.url}/auth/callback"
        return str(
            oidc_provider.exchange(oidc_provider.authorization_code(max_.user_id, callback), callback)["id_token"]
        )

    def members_seen_with(token: str) -> dict[str, Any]:
        response = server.api("GET", "/api/members", org=org.id, token=token)
        assert response.status_code == 200, response.text
        return {m["email"]: m["userId"] for m in response.json()["members"]}

    before = id_token()
    assert members_seen_with(before)[max_.email] == max_.user_id  # the browser's member is the token's `sub`
    oidc_provider.rotate_signing_key()  # the JWKS now publishes the new key only
    time.sleep(JWKS_REFRESH_S)  # the server reads the JWKS again at most once per interval after its last read
    assert members_seen_with(id_token())[max_.email] == max_.user_id
    assert server.api("GET", "/api/members", org=org.id, token=before).status_code == 401  # its key is gone

    # Signing in again in the browser after the rotation works too
    page.get_by_role("button", name="Sign out").click()
    visit(page, f"{server.url}/auth/login?next=/joined/{org.id}")
    sign_in_at_provider(page, oidc_provider, max_)
    page.wait_for_url(f"{server.url}/**")
    assert heading(page) == f"You joined {org.name}", page.get_by_role("main").inner_text()
    expect_signed_in_as(page, max_)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [({"aud": "another-client"}, "not valid"), ({"exp": 1_000_000_000}, "not valid"), ({"email": "a\x00b@x.example"}, "no usable identity")],
    ids=["for-another-client", "expired", "unstorable-email"],
)  # fmt: skip
def test_an_id_token_the_server_cannot_trust_or_store_is_refused_with_a_page_not_a_500(
    oidc_site: LiveServer, provider: OidcProvider, page: Page, claims: dict[str, Any], reason: str
) -> None:
    mallory = new_actor("mallory")
    given = {"email": mallory.email, "name": mallory.name, **claims}
    provider.add_user(mallory.user_id, **given)  # the provider puts these claims in its ID token
    response = page.goto(f"{oidc_site.url}/auth/login")
    assert response is not None
    sign_in_at_provider(page, provider, mallory)
    page.wait_for_url(f"{oidc_site.url}/auth/callback?*")
    assert heading(page) == "Signing in did not work"
    expect(page.get_by_role("main")).to_contain_text(reason)
    visit(page, f"{oidc_site.url}/auth/account", 200)  # redirected to sign in again: nobody is signed in
    assert page.url.startswith(f"{provider.issuer}/oauth2/authorize")
