"""The invitation and invite-link pages: what each state of an invitation or link shows, and accepting.

GET never changes anything; accepting is a POST with the session's CSRF token, by the invited person.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote, unquote

import pytest

from membership import Actor
from membership.tokens import INVITATION, TokenSigner
from tests.factories import new_actor
from tests.web.conftest import Site, heading


def accept_page(token: str) -> str:
    return f"/invite/accept?token={quote(token)}"


def test_the_invitation_page_shows_what_joining_gives_and_offers_to_sign_in(site: Site, owner: Actor) -> None:
    org = site.organization(owner, "Acme <Labs>")
    invited = site.invite(org, owner, "bob@example.com", "developer", days=3)
    page = site.get(accept_page(invited.secret or ""))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and heading(page) == "Join Acme &lt;Labs&gt;"  # escaped, never markup
    assert "<Labs>" not in html
    for fact in ("bob@example.com", "Developer", "Create, change and delete deployments", "View members",
                 owner.name, "Sign in to accept"):  # fmt: skip
        assert fact in html, fact
    assert "Manage members" not in html and "Create, change and delete members" not in html
    assert (site.clock.now + site.clock.offset).year >= 2026 and "UTC" in html  # the expiry, in words
    assert site.member_user_ids(org) == {owner.user_id}  # looking changed nothing


def test_the_invited_person_signs_in_accepts_and_is_a_member_with_the_role(site: Site, owner: Actor) -> None:
    org = site.organization(owner)
    bob = new_actor("bob")
    token = site.invite(org, owner, bob.email, "developer").secret or ""
    signed_in = site.sign_in(bob, accept_page(token))
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == accept_page(token)
    page = site.get(accept_page(token))
    assert "Accept invitation" in page.get_data(as_text=True)
    accepted = site.post("/invite/accept", {"token": token})
    assert accepted.status_code == 303 and accepted.headers["Location"] == f"/joined/{org}"
    joined = site.get(f"/joined/{org}")
    assert heading(joined) == "You joined Acme" and "Developer" in joined.get_data(as_text=True)
    assert f"dev:{bob.email}" in site.member_user_ids(org)
    again = site.get(accept_page(token))
    assert again.status_code == 410 and heading(again) == "This invitation was already accepted"


def test_accepting_without_the_forms_csrf_token_is_refused_and_changes_nothing(site: Site, owner: Actor) -> None:
    org = site.organization(owner)
    bob = new_actor("bob")
    token = site.invite(org, owner, bob.email).secret or ""
    site.sign_in(bob)
    refused = site.post("/invite/accept", {"token": token}, csrf=False)
    assert refused.status_code == 400 and heading(refused) == "This form has expired"
    forged = site.client.post("/invite/accept", data={"token": token, "csrf_token": "forged"})
    assert forged.status_code == 400
    assert site.member_user_ids(org) == {owner.user_id}


def test_someone_signed_in_with_another_address_is_told_which_and_may_switch(site: Site, owner: Actor) -> None:
    org = site.organization(owner)
    carol, dave = new_actor("carol"), new_actor("dave")
    invited = site.invite(org, owner, carol.email)
    token = invited.secret or ""
    site.sign_in(dave)
    page = site.get(accept_page(token))
    html = page.get_data(as_text=True)
    assert "This invitation is for another address" in html and carol.email in html and dave.email in html
    assert "Switch account" in html and "Accept invitation" not in html
    refused = site.post("/invite/accept", {"token": token})
    assert refused.status_code == 403 and heading(refused) == "This invitation is for another e-mail address"
    switched = site.post("/auth/logout", {"next": "/auth/login?next=" + quote(accept_page(token))})
    assert switched.status_code == 303 and switched.headers["Location"].startswith("/auth/login?next=")
    assert site.signed_in_as() is None
    with site.services.organizations.reading(org) as organization:
        assert organization.invitations[str(invited.id)].status == "pending"


def test_closed_invitations_each_get_a_page_saying_what_happened(site: Site, owner: Actor) -> None:
    org = site.organization(owner)
    organizations = site.services.organizations
    cancelled = site.invite(org, owner, "cancelled@example.com")
    site.caught_up(organizations.cancel_invitation(org, owner, cancelled.id))  # type: ignore[arg-type]
    replaced = site.invite(org, owner, "replaced@example.com")
    site.caught_up(organizations.resend_invitation(org, owner, replaced.id))  # type: ignore[arg-type]
    expired = site.invite(org, owner, "expired@example.com", days=1)
    site.clock.advance(days=2)
    forged = TokenSigner(b"not the server's key, no").derive(INVITATION, org, expired.id, "nonce")  # type: ignore[arg-type]
    for token, status, title in (
        (cancelled.secret, 410, "This invitation was cancelled"),
        (replaced.secret, 410, "This invitation was replaced by a newer one"),
        (expired.secret, 410, "This invitation has expired"),
        (forged, 404, "This invitation link is not valid"),
        ("not-a-token", 404, "This invitation link is not valid"),
    ):
        page = site.get(accept_page(token or ""))
        assert (page.status_code, heading(page)) == (status, title), token
        assert "Accept invitation" not in page.get_data(as_text=True)
    assert site.get("/invite/accept").status_code == 404


def test_an_unverified_address_is_told_why_it_cannot_accept(site: Site, owner: Actor) -> None:
    org = site.organization(owner)
    erin = new_actor("erin")
    token = site.invite(org, owner, erin.email).secret or ""
    site.sign_in(erin)
    with site.client.session_transaction() as session:  # as a provider's ID token with email_verified false
        session["user"] = {**session["user"], "email_verified": False}
    page = site.get(accept_page(token))
    assert "Your e-mail address is not verified" in page.get_data(as_text=True)
    assert "Accept invitation" not in page.get_data(as_text=True)
    refused = site.post("/invite/accept", {"token": token})
    assert refused.status_code == 403 and heading(refused) == "Your e-mail address is not verified"
    assert site.member_user_ids(org) == {owner.user_id}


def test_accepting_signed_out_sends_to_sign_in_and_back(site: Site, owner: Actor) -> None:
    org = site.organization(owner)
    token = site.invite(org, owner, "frank@example.com").secret or ""
    site.get("/auth/login")  # a form of this session's (the page itself only links to signing in)
    answer = site.post("/invite/accept", {"token": token})
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/auth/login?next=")
    back = site.sign_in(new_actor("frank"), unquote(answer.headers["Location"].split("next=", 1)[1]))
    assert back.headers["Location"] == accept_page(token)
    assert site.member_user_ids(org) == {owner.user_id}


def test_an_invite_link_page_joins_once_and_then_says_already_a_member(site: Site, owner: Actor) -> None:
    org = site.organization(owner, "Links Ltd")
    code = site.link(org, owner, "viewer").secret or ""
    page = site.get(f"/join/{code}")
    assert page.status_code == 200 and heading(page) == "Join Links Ltd" and "Sign in to join" in page.get_data(as_text=True)
    gina = new_actor("gina")
    site.sign_in(gina, f"/join/{code}")
    site.get(f"/join/{code}")
    joined = site.post(f"/join/{code}", {})
    assert joined.status_code == 303 and joined.headers["Location"] == f"/joined/{org}"
    assert f"dev:{gina.email}" in site.member_user_ids(org)
    again = site.get(f"/join/{code}")
    assert again.status_code == 200 and "You are already a member of Links Ltd" in again.get_data(as_text=True)
    assert "<button" not in again.get_data(as_text=True).split("<main>")[1]


def test_closed_invite_links_each_get_a_page_saying_what_happened(site: Site, owner: Actor) -> None:
    org = site.organization(owner)
    organizations = site.services.organizations
    deleted = site.link(org, owner)
    site.caught_up(organizations.delete_invite_link(org, owner, deleted.id))  # type: ignore[arg-type]
    used_up = site.link(org, owner, max_uses=1)
    site.caught_up(organizations.accept_invite_link(new_actor("first"), used_up.secret or ""))
    expired = site.link(org, owner, days=1)
    site.clock.advance(days=2)
    for code, status, title in (
        (deleted.secret, 410, "This invite link was deleted"),
        (used_up.secret, 410, "This invite link has been used up"),
        (expired.secret, 410, "This invite link has expired"),
        ("AAAA", 404, "This invite link is not valid"),
    ):
        page = site.get(f"/join/{code}")
        assert (page.status_code, heading(page)) == (status, title), code


def test_the_joined_page_is_for_members_only(site: Site, owner: Actor) -> None:
    org = site.organization(owner, "Private")
    site.sign_in(new_actor("stranger"))
    page = site.get(f"/joined/{org}")
    assert page.status_code == 403 and "Private" not in page.get_data(as_text=True)


def test_failed_look_ups_are_limited_per_address_and_valid_ones_do_not_count(site: Site, owner: Actor) -> None:
    org = site.organization(owner)
    valid = site.invite(org, owner, "henry@example.com").secret or ""
    allowed = site.services.settings.accept_failures
    for attempt in range(allowed):
        assert site.get(accept_page(valid)).status_code == 200  # a valid look-up never counts
        assert site.get(accept_page(f"guess-{attempt}")).status_code == 404
    limited = site.get(accept_page(valid))
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert site.get(f"/join/{valid}").status_code == 429  # the same budget for links
    other_address = site.client.get(accept_page(valid), environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other_address.status_code == 200


def test_the_access_log_never_holds_an_invite_links_code_or_a_token(
    site: Site, owner: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    org = site.organization(owner)
    code = site.link(org, owner).secret or ""
    token = site.invite(org, owner, "quinn@example.com").secret or ""
    with caplog.at_level(logging.INFO, logger="api.access"):
        assert site.get(f"/join/{code}").status_code == 200
        assert site.get(accept_page(token)).status_code == 200
    logged = [json.loads(record.getMessage()) for record in caplog.records if record.name == "api.access"]
    assert [entry["path"] for entry in logged] == ["/join/…", "/invite/accept"]
    assert code not in caplog.text and token not in caplog.text
