"""The browser tests' infrastructure, proved piece by piece: Chromium renders what the live server
answers (on both stores), the server takes the tokens the fixture mints and sends its e-mail to the
inbox, the OpenID Connect provider signs a user in through its form in Chromium and its tokens verify
against its JWKS (before and after a key rotation), the inbox receives what smtplib sends, axe-core
finds what it should, and a missing Chromium or a server that cannot start fails with the reason."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import jwt
import pytest
from playwright.sync_api import Page

from tests.browser.conftest import LiveServer, OidcProvider, SmtpInbox, find_chromium
from tests.factories import new_actor

pytestmark = pytest.mark.browser


def verified_id_token(provider: OidcProvider, id_token: str) -> dict[str, object]:
    """The ID token's claims once its RS256 signature checks against a key of the provider's JWKS."""
    keys = [jwt.PyJWK(key) for key in provider.jwks()["keys"]]
    for key in keys:
        try:
            return dict(
                jwt.decode(id_token, key, algorithms=["RS256"], audience=provider.client_id, issuer=provider.issuer)
            )
        except jwt.InvalidSignatureError:
            continue
    raise AssertionError(f"no key of the JWKS ({[k.key_id for k in keys]}) verifies the ID token")


# -- the live server (on the embedded store: test_accept_flows runs the whole flow on both) ------------------
def test_chromium_renders_the_live_servers_health_and_openapi_document(
    live_server: Callable[..., LiveServer], page: Page
) -> None:
    server = live_server()

    health = page.goto(f"{server.url}/api/health")
    assert health is not None and health.status == 200
    assert json.loads(page.inner_text("body"))["database"] == "ok"

    document = page.goto(f"{server.url}/api/openapi.json")
    assert document is not None and document.status == 200
    assert json.loads(page.inner_text("body"))["openapi"].startswith("3.")
    assert page.url == f"{server.url}/api/openapi.json"


def test_the_live_server_takes_minted_tokens_and_mails_invitations_with_links_to_where_it_listens(
    live_server: Callable[..., LiveServer], smtp_inbox: SmtpInbox
) -> None:
    server = live_server()
    owner, invitee = new_actor("owner"), new_actor("invitee")

    created = server.api("POST", "/api/organizations", owner, json={"name": "Browser Infrastructure"})
    assert created.status_code == 201, created.text
    org = created.json()["id"]
    roles = server.api("GET", "/api/roles", owner, org).json()["roles"]
    viewer = next(role["id"] for role in roles if role["name"] == "Viewer")
    invited = server.api("POST", "/api/members/invite", owner, org, json={"email": invitee.email, "roleId": viewer})
    assert invited.status_code == 201, invited.text

    message = smtp_inbox.wait_for_message(invitee.email, timeout=20)
    assert "Browser Infrastructure" in str(message["Subject"])
    text = message.get_body(("plain",))
    assert text is not None and f"{server.url}/" in text.get_content()

    refused = server.api("GET", "/api/members", org=org, token=server.token(owner, exp=1))
    assert refused.status_code == 401


def test_a_server_that_cannot_start_fails_the_test_with_its_stderr(live_server: Callable[..., LiveServer]) -> None:
    with pytest.raises(pytest.fail.Exception, match="(?s)exited with status 2.*MEMBERSHIP_JWT_SECRET"):
        live_server(env={"MEMBERSHIP_JWT_SECRET": "too short"})


# -- Chromium and axe-core ------------------------------------------------------------------------------------
def test_a_missing_chromium_fails_with_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        find_chromium({"MEMBERSHIP_TEST_CHROMIUM": str(tmp_path / "no-chromium")})
    with pytest.raises(pytest.fail.Exception, match="no Chromium found.*apt-get install chromium"):
        find_chromium({"PATH": str(tmp_path)})


def test_axe_check_fails_on_serious_violations_and_passes_a_clean_page(
    page: Page, axe_check: Callable[..., None]
) -> None:
    page.set_content(
        '<!doctype html><html lang="en"><head><title>Bad</title></head>'
        "<body><main><h1>Bad</h1><img src='data:,'><button></button></main></body></html>"
    )
    with pytest.raises(pytest.fail.Exception) as failure:
        axe_check(page)
    assert "image-alt (critical)" in str(failure.value) and "button-name (critical)" in str(failure.value)

    page.set_content(
        '<!doctype html><html lang="en"><head><title>Good</title></head>'
        "<body><main><h1>Good</h1><img src='data:,' alt='A logo'><button>Save</button></main></body></html>"
    )
    axe_check(page)


# -- the OpenID Connect provider ------------------------------------------------------------------------------
def test_the_provider_publishes_its_discovery_document_and_jwks(oidc_provider: OidcProvider) -> None:
    metadata = oidc_provider.metadata()

    assert metadata["issuer"] == oidc_provider.issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "end_session_endpoint"):
        assert metadata[endpoint].startswith(f"{oidc_provider.issuer}/"), endpoint
    assert metadata["jwks_uri"] == f"{oidc_provider.issuer}/jwks"
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    (key,) = oidc_provider.jwks()["keys"]
    assert key["kty"] == "RSA" and key["kid"] and "d" not in key  # the public half only


def test_chromium_signs_in_through_the_providers_form_and_the_id_token_verifies(
    oidc_provider: OidcProvider, page: Page
) -> None:
    oidc_provider.add_user("ada", email="ada@example.com", email_verified=True, name="Ada Lovelace")
    redirect_uri = f"{oidc_provider.issuer}/"  # a real page to land on (the provider's own home page)
    state, nonce = uuid4().hex, uuid4().hex

    page.goto(oidc_provider.authorize_url(redirect_uri, state, nonce))
    oidc_provider.sign_in_form(page, "ada")
    page.wait_for_url(f"{redirect_uri}?*")

    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == [state]
    tokens = oidc_provider.exchange(query["code"][0], redirect_uri)
    claims = verified_id_token(oidc_provider, tokens["id_token"])
    assert (claims["sub"], claims["email"], claims["email_verified"], claims["name"], claims["nonce"]) == (
        "ada",
        "ada@example.com",
        True,
        "Ada Lovelace",
        nonce,
    )
    assert "kid" not in jwt.get_unverified_header(tokens["id_token"])  # this provider names no key


def test_the_provider_denies_when_the_user_presses_deny(oidc_provider: OidcProvider, page: Page) -> None:
    redirect_uri = f"{oidc_provider.issuer}/"
    page.goto(oidc_provider.authorize_url(redirect_uri, "denied-state"))
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(f"{redirect_uri}?*")

    assert parse_qs(urlsplit(page.url).query)["error"] == ["access_denied"]


def test_after_a_key_rotation_tokens_verify_only_against_the_new_key(oidc_provider: OidcProvider) -> None:
    redirect_uri = "http://127.0.0.1:9/callback"
    old_kid = oidc_provider.jwks()["keys"][0]["kid"]
    old_token = oidc_provider.exchange(oidc_provider.authorization_code("ada", redirect_uri), redirect_uri)["id_token"]

    new_kid = oidc_provider.rotate_signing_key()
    assert new_kid != old_kid and [k["kid"] for k in oidc_provider.jwks()["keys"]] == [new_kid]
    new_token = oidc_provider.exchange(oidc_provider.authorization_code("ada", redirect_uri), redirect_uri)["id_token"]
    assert verified_id_token(oidc_provider, new_token)["sub"] == "ada"
    with pytest.raises(AssertionError, match="no key of the JWKS"):
        verified_id_token(oidc_provider, old_token)

    newest_kid = oidc_provider.rotate_signing_key(keep_previous=True)
    assert [k["kid"] for k in oidc_provider.jwks()["keys"]] == [newest_kid, new_kid]
    assert verified_id_token(oidc_provider, new_token)["sub"] == "ada"


def test_chromium_ends_the_session_at_the_provider_and_returns(oidc_provider: OidcProvider, page: Page) -> None:
    back = f"{oidc_provider.issuer}/"
    page.goto(f"{oidc_provider.metadata()['end_session_endpoint']}?post_logout_redirect_uri={back}&state=bye")
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(f"{back}?state=bye")


# -- SMTP -----------------------------------------------------------------------------------------------------
def test_the_inbox_receives_what_smtplib_sends_and_waits_in_vain_for_what_nobody_sent(smtp_inbox: SmtpInbox) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "tests@example.com", "Ada@Example.com", "Über alles"
    message.set_content("Hello, Ada")
    with smtplib.SMTP(smtp_inbox.host, smtp_inbox.port, timeout=5) as client:
        client.send_message(message)

    received = smtp_inbox.wait_for_message("ada@example.com", timeout=5)
    assert (received["Subject"], received.get_content().strip()) == ("Über alles", "Hello, Ada")
    with pytest.raises(pytest.fail.Exception, match="no e-mail to ada@example.com within 0.2 s"):
        smtp_inbox.wait_for_message("ada@example.com", timeout=0.2)  # each message is handed out once
