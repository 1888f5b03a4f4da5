"""Signing in: the development form only where nobody else can reach the server, `next` never leaves
the site, sessions are cookies the browser's scripts cannot read, and every page is confined by its headers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from service.settings import Settings
from tests.factories import new_actor
from tests.web.conftest import Site, heading
from web.security import safe_next


def test_the_development_form_signs_in_as_the_address_given(site: Site) -> None:
    page = site.get("/auth/login")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Development only" in html and "Sign in (development only)" in html
    ivy = new_actor("ivy")
    signed_in = site.sign_in(ivy)
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/auth/account"
    assert site.signed_in_as() == f"dev:{ivy.email}"
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # http://127.0.0.1
    account = site.get("/auth/account")
    assert ivy.email in account.get_data(as_text=True)


def test_the_development_form_refuses_what_could_not_be_stored(site: Site) -> None:
    site.get("/auth/login")
    for email in ("not-an-address", "a\x00b@example.com", ""):
        refused = site.post("/auth/login", {"email": email, "name": "X"})
        assert refused.status_code == 422 and site.signed_in_as() is None
    site.get("/auth/login")
    refused = site.post("/auth/login", {"email": "ok@example.com", "name": "Bad\x07name"})
    assert refused.status_code == 422 and site.signed_in_as() is None


@pytest.mark.parametrize(
    "settings_change",
    [
        pytest.param(lambda s: s.served_at("0.0.0.0", 8000), id="listening-on-every-address"),  # noqa: S104
        pytest.param(lambda s: s.served_at("192.0.2.10", 8000), id="listening-on-a-public-address"),
        pytest.param(lambda s: replace(s, listen_host=None), id="not-served-by-membership-serve"),
    ],
)
def test_the_development_form_is_unreachable_unless_only_loopback_listens(
    make_site: Callable[[Settings], Site], site_settings: Settings, settings_change: Callable[[Settings], Settings]
) -> None:
    site = make_site(settings_change(site_settings))
    page = site.get("/auth/login")
    assert page.status_code == 503 and heading(page) == "Signing in is not set up"
    assert "Development only" not in page.get_data(as_text=True)
    site.get("/auth/account")  # a page whose session has a CSRF token: the refusal is not the token's
    attempt = site.client.post("/auth/login", data={"email": "mallory@example.com", "name": "M"})
    assert attempt.status_code in (400, 404) and site.signed_in_as() is None


def test_the_development_form_is_unreachable_when_an_issuer_is_configured(
    make_site: Callable[[Settings], Site], settings_for: Callable[..., Settings], store: str
) -> None:
    settings = settings_for(
        store, MEMBERSHIP_JWT_SECRET="j" * 40, MEMBERSHIP_OIDC_ISSUER="http://127.0.0.1:9/issuer",
        MEMBERSHIP_OIDC_CLIENT_ID="membership",
    ).served_at("127.0.0.1", 8000)  # fmt: skip
    assert not settings.development_sign_in
    site = make_site(settings)
    with site.client.session_transaction() as session:
        session["csrf_token"] = "x"  # whatever the token, the form itself is gone
    attempt = site.client.post("/auth/login", data={"email": "mallory@example.com", "name": "M"})
    assert attempt.status_code in (400, 404) and site.signed_in_as() is None
    unreachable_provider = site.get("/auth/login")  # the issuer's discovery document cannot be read
    assert unreachable_provider.status_code == 503 and "Development only" not in unreachable_provider.get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example", "javascript:alert(1)",
     "/\r\nLocation: https://evil.example", "/\x00x", "evil.example"],
)  # fmt: skip
def test_next_never_leads_off_the_site(site: Site, target: str) -> None:
    assert safe_next(target, "/fallback") == "/fallback"
    signed_in = site.sign_in(new_actor("jack"), target)
    location = signed_in.headers["Location"]
    assert location.startswith("/") and not location.startswith("//") and "evil.example" not in location.split("?")[0]


def test_next_keeps_a_path_of_this_site_with_its_query(site: Site) -> None:
    assert safe_next("/invite/accept?token=abc", "/x") == "/invite/accept?token=abc"
    signed_in = site.sign_in(new_actor("kate"), "/join/abc")
    assert signed_in.headers["Location"] == "/join/abc"


def test_signing_out_ends_the_session(site: Site) -> None:
    site.sign_in(new_actor("liam"))
    site.get("/auth/account")
    signed_out = site.post("/auth/logout", {})
    assert signed_out.status_code == 303 and site.signed_in_as() is None
    assert site.get("/auth/account").status_code == 303  # to sign in again


def test_every_page_is_confined_by_its_headers(site: Site) -> None:
    for path in ("/auth/login", "/invite/accept?token=x", "/join/x", "/auth/signed-out"):
        page = site.get(path)
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
        assert page.headers["Referrer-Policy"] == "no-referrer"  # the address holds the token
        assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"


def test_sessions_are_secure_cookies_when_the_public_url_is_https(
    make_site: Callable[[Settings], Site], site_settings: Settings
) -> None:
    site = make_site(replace(site_settings, public_url="https://members.example.com", public_url_given=True))
    signed_in = site.sign_in(new_actor("mia"))
    assert "Secure" in signed_in.headers["Set-Cookie"]
