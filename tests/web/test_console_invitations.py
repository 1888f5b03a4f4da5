"""Invite Member, Invitations and Invite links over HTTP: the guide's form, the list with each e-mail's delivery
told honestly, resend and cancel, links shown once; each refusal in words, the API's hourly limit shared, and
nothing offered or accepted beyond the signed-in person's rights (the domain refuses forged posts)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from membership import Actor
from membership import exceptions as err
from membership.organization import system_role_id
from projections import invitations as invitations_reads
from service.settings import Settings
from tests.e2e.conftest import ApiClient
from tests.factories import new_actor
from tests.web.conftest import JWT_SECRET, Site, heading
from tests.web.test_console_members import dev, joined, owned_organization
from web import console_invitations
from workers.mail.compose import Outgoing
from workers.mail.transport import PermanentError, TransientError

INVITE = "/settings/invitations/new"
INVITATIONS = "/settings/invitations"
LINKS = "/settings/invite-links"
NEW_LINK = "/settings/invite-links/new"
JOIN_URL = re.compile(r'id="link-url" type="text" readonly value="(http://127\.0\.0\.1:8000/join/([^"]+))"')


def text(site: Site, path: str) -> str:
    """The page, with the line-break hints inside e-mail addresses (<wbr>) taken out."""
    return site.get(path).get_data(as_text=True).replace("<wbr>", "")


def invite_through_the_form(site: Site, org: UUID, email: str, role: str = "developer", days: str = "7") -> Any:
    site.get(INVITE)
    return site.post(INVITE, {"email": email, "role_id": str(system_role_id(org, role)), "expires_in_days": days})


def invitations_of(site: Site, org: UUID, status: str = "all") -> dict[str, invitations_reads.InvitationRecord]:
    page = invitations_reads.list_invitations(site.services.read_db, org, site.clock(), status, 200)
    return {invitation.email: invitation for invitation in page.items}


def row_of(html: str, email: str) -> str:
    """The table row naming `email` (its <tr> ... </tr>)."""
    for row in html.split("<tr>")[1:]:
        if email in row.split("</tr>")[0]:
            return row.split("</tr>")[0]
    raise AssertionError(f"no row for {email}")


def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def flash_errors(html: str) -> list[str]:
    return [" ".join(m.split()) for m in re.findall(r'<p class="flash error" role="alert">(.*?)</p>', html, re.S)]


# -- Invite Member -------------------------------------------------------------------------------------------------
def test_invite_member_sends_an_invitation_that_the_invitations_page_lists_and_the_mailer_sends(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    members = text(site, "/settings/members")
    assert f'<a class="button" href="{INVITE}">Invite Member</a>' in members

    form = site.get(INVITE)
    html = form.get_data(as_text=True)
    assert form.status_code == 200 and heading(form) == "Invite Member"
    for label in ('for="email">Email<', 'for="role_id">Role<', 'for="expires_in_days">Expires in (days)<'):
        assert label in html, label
    assert '<button type="submit">Send Invitation</button>' in html
    assert 'min="1" max="30"' in html and 'value="7"' in html
    assert f'<option value="{system_role_id(org, "viewer")}" selected>Viewer</option>' in html  # the least, first
    offered = re.findall(r'<option value="([^"]+)"', html.split('id="role_id"')[1].split("</select>")[0])
    assert set(offered) == {str(system_role_id(org, r)) for r in ("admin", "developer", "viewer")}  # never Owner

    bob = new_actor("bob")
    sent = site.post(
        INVITE, {"email": bob.email.upper(), "role_id": str(system_role_id(org, "admin")), "expires_in_days": "3"}
    )

    assert sent.status_code == 303 and sent.headers["Location"] == INVITATIONS
    invitation = invitations_of(site, org)[bob.email]
    assert (invitation.status, invitation.role.name, invitation.invited_by_id) == (
        "pending",
        "Admin",
        dev(owner).user_id,
    )
    assert round((invitation.expires_at - invitation.created_at).total_seconds()) == 3 * 86400
    listed = text(site, INVITATIONS)
    assert f"The invitation to {bob.email.upper()} was sent." in listed
    assert bob.email in row_of(listed, bob.email) and "Admin" in row_of(listed, bob.email)
    assert f"by {dev(owner).email}" in row_of(listed, bob.email)

    # The mailer (the embedded default writes to var/outbox) sends it, and the page says when
    until(lambda: invitations_of(site, org)[bob.email].last_sent_at is not None)  # its outcome recorded
    assert re.search(r"Sent\s*<time datetime=", row_of(text(site, INVITATIONS), bob.email))
    outbox = site.services.settings.database.var_dir / "outbox"
    assert any(bob.email in path.read_text(errors="replace") for path in outbox.iterdir())


def test_each_refusal_of_the_domain_appears_in_words_beside_the_form_which_keeps_what_was_typed(
    make_site: Callable[[Settings], Site], settings_for: Callable[..., Settings], store: str
) -> None:
    site = make_site(
        settings_for(store, MEMBERSHIP_JWT_SECRET=JWT_SECRET, MEMBERSHIP_MAX_PENDING_INVITATIONS="2").served_at(
            "127.0.0.1", 8000
        )
    )
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    member = joined(site, org, owner, "viewer", "member")
    carol = new_actor("carol")
    assert invite_through_the_form(site, org, carol.email).headers["Location"] == INVITATIONS

    cases = [
        (member.email, "7", "Already a member of this organization."),
        (carol.email, "7", f"{carol.email} already has a pending invitation."),
        (new_actor("third").email, "7", "This organization has 2 pending invitations, the most allowed."),
        ("not an address", "7", "is not a valid e-mail address"),
        (new_actor("dan").email, "31", "Expires in (days) must be a whole number from 1 to 30."),
        (new_actor("dan").email, "0", "Expires in (days) must be a whole number from 1 to 30."),
        (new_actor("dan").email, "soon", "Expires in (days) must be a whole number from 1 to 30."),
    ]
    other = new_actor("other")
    site.caught_up(
        site.services.organizations.invite_member(org, dev(owner), other.email, system_role_id(org, "viewer"))
    )
    for email, days, words in cases:
        refused = invite_through_the_form(site, org, email, days=days)
        assert refused.status_code == 303 and refused.headers["Location"] == INVITE, email
        form = text(site, INVITE)
        assert any(words in error for error in flash_errors(form)), (words, flash_errors(form))
        assert f'value="{email}"' in form and f'value="{days}"' in form  # what was typed, to correct
        assert f'value="{email}"' not in text(site, INVITE)  # kept once: the next visit starts afresh
    assert set(invitations_of(site, org, "pending")) == {carol.email, other.email}


def test_invitations_and_resends_take_the_apis_hourly_slots_and_the_limit_is_said_in_words(
    make_site: Callable[[Settings], Site], settings_for: Callable[..., Settings], store: str
) -> None:
    site = make_site(
        settings_for(store, MEMBERSHIP_JWT_SECRET=JWT_SECRET, MEMBERSHIP_INVITES_PER_HOUR="2").served_at(
            "127.0.0.1", 8000
        )
    )
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    first = new_actor("first")
    invite_through_the_form(site, org, first.email)
    invite_through_the_form(site, org, first.email)  # refused (already invited): its slot is given back
    api = site.client.post(
        "/api/members/invite",
        json={"email": new_actor("api").email, "roleId": str(system_role_id(org, "viewer"))},
        headers={
            "Authorization": f"Bearer {ApiClient.token(dev(owner), key=JWT_SECRET)}",
            "X-Organization-Id": str(org),
        },
    )
    assert api.status_code == 201, api.get_data(as_text=True)  # the second slot, through the API

    site.get(INVITATIONS)
    invitation = invitations_of(site, org)[first.email]
    refused = site.post(f"{INVITATIONS}/{invitation.id}/resend", {"status": "pending"})
    assert refused.status_code == 303
    page = text(site, INVITATIONS)
    assert "You can send 2 invitations in an hour (resends included); try again in 60 minutes." in flash_errors(page)
    assert invitations_of(site, org)[first.email].resend_count == 0
    over = invite_through_the_form(site, org, new_actor("fourth").email)
    assert over.headers["Location"] == INVITE and "You can send 2 invitations in an hour" in text(site, INVITE)
    assert len(invitations_of(site, org)) == 2

    site.clock.advance(minutes=61)  # the window slides past every slot
    assert invite_through_the_form(site, org, new_actor("fifth").email).headers["Location"] == INVITATIONS


def test_a_viewer_sees_no_invite_button_nor_the_lists_and_forged_posts_are_refused(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    pending = site.invite(org, dev(owner), new_actor("pending").email, "viewer")
    link = site.link(org, dev(owner), "viewer")
    viewer = joined(site, org, owner, "viewer", "viewer")
    site.get("/settings/members")
    site.post("/auth/logout", {})
    site.sign_in(viewer)

    members = text(site, "/settings/members")
    assert "Invite Member" not in members and INVITE not in members
    for path in (INVITE, INVITATIONS, LINKS, f"{LINKS}/{link.id}/delete"):
        page = site.get(path)
        assert page.status_code == 403 and "permission to manage members" in page.get_data(as_text=True), path
        assert "Send Invitation" not in page.get_data(as_text=True)

    forged = site.post(
        INVITE, {"email": new_actor("x").email, "role_id": str(system_role_id(org, "viewer")), "expires_in_days": "7"}
    )
    assert forged.status_code == 303 and forged.headers["Location"] == "/settings/members"
    assert "This action requires the manage:members permission." in flash_errors(text(site, "/settings/members"))
    for path, form in ((f"{INVITATIONS}/{pending.id}/cancel", {}), (f"{INVITATIONS}/{pending.id}/resend", {}),
                       (LINKS, {"role_id": str(system_role_id(org, "viewer")), "max_uses": "0", "expires_in_days": "7"}),
                       (f"{LINKS}/{link.id}/delete", {})):  # fmt: skip
        assert site.post(path, form).headers["Location"] == "/settings/members", path
        assert "This action requires the manage:members permission." in flash_errors(text(site, "/settings/members"))
    with site.services.organizations.reading(org) as organization:
        assert len(organization.invitations) == 2 and len(organization.links) == 1
        assert (
            organization.invitation_status(organization.get_invitation(pending.id or UUID(int=0)), site.clock())
            == "pending"
        )
        assert not organization.get_invite_link(link.id or UUID(int=0)).deleted

    # Without the form's CSRF token nothing is even tried
    assert site.post(INVITE, {"email": "x@example.com"}, csrf=False).status_code == 400


def pending_email(site: Site, org: UUID, invitation_id: UUID | None) -> str:
    found = invitations_reads.get_invitation(site.services.read_db, org, invitation_id or UUID(int=0), site.clock())
    assert found is not None
    return found.email


# -- Invitations -----------------------------------------------------------------------------------------------------
class ScriptedTransport:
    """The mail server as the test wants it: 'bounce' refused for good, 'offline' unreachable, others taken."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, outgoing: Outgoing) -> None:
        if "bounce" in outgoing.recipient:
            raise PermanentError("550 5.1.1 <b>No</b> such user")
        if "offline" in outgoing.recipient:
            raise TransientError("Connection refused")
        self.sent.append(outgoing.recipient)


def test_invitations_filter_by_status_and_tell_each_e_mails_delivery_honestly(site: Site) -> None:
    assert site.services.mailer is not None
    site.services.mailer.transport = ScriptedTransport()
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    expiring = site.invite(org, dev(owner), new_actor("expiring").email, "viewer", days=7)
    site.clock.advance(days=8)
    sent, bounce, offline = new_actor("sent"), new_actor("bounce"), new_actor("offline")
    for person in (sent, bounce, offline):
        site.invite(org, dev(owner), person.email, "developer")
    accepted = joined(site, org, owner, "viewer", "accepted")
    cancelled = new_actor("cancelled")
    receipt = site.invite(org, dev(owner), cancelled.email)
    site.caught_up(site.services.organizations.cancel_invitation(org, dev(owner), receipt.id or UUID(int=0)))
    until(lambda: invitations_of(site, org)[sent.email].last_sent_at is not None)
    until(lambda: invitations_of(site, org)[bounce.email].email_status == "failed")
    until(lambda: invitations_of(site, org)[offline.email].email_status == "retrying")

    pending = text(site, INVITATIONS)
    assert '<option value="pending" selected>Pending</option>' in pending and "3 pending invitations" in pending
    listed = {
        email
        for email in (sent.email, bounce.email, offline.email, accepted.email, cancelled.email)
        if email in pending
    }
    assert listed == {sent.email, bounce.email, offline.email}
    assert re.search(r"Sent\s*<time datetime=", row_of(pending, sent.email))
    assert "Failed: 550 5.1.1 &lt;b&gt;No&lt;/b&gt; such user" in row_of(pending, bounce.email)
    retrying = " ".join(row_of(pending, offline.email).split())
    assert "Not delivered yet: retrying, next try <time" in retrying and "Last error: Connection refused" in retrying
    for email in (sent.email, bounce.email, offline.email):
        assert "Resend<span" in row_of(pending, email) and "Cancel<span" in row_of(pending, email)

    expired = text(site, f"{INVITATIONS}?status=expired")
    expiring_email = pending_email(site, org, expiring.id)
    assert expiring_email in expired and sent.email not in expired and "1 expired invitation " in expired
    assert "Resend<span" in row_of(expired, expiring_email)  # an expired one may be sent again
    done = text(site, f"{INVITATIONS}?status=accepted")
    assert accepted.email in done and "Resend<span" not in row_of(done, accepted.email)
    gone = text(site, f"{INVITATIONS}?status=cancelled")
    assert cancelled.email in gone and "Resend<span" not in row_of(gone, cancelled.email) and sent.email not in gone
    everything = text(site, f"{INVITATIONS}?status=all")
    assert all(p.email in everything for p in (sent, bounce, offline, accepted, cancelled))

    # With nothing sending, an invitation says it waits: never "sent" before it is
    site.services.mailer.stop()
    waiting = new_actor("waiting")
    site.invite(org, dev(owner), waiting.email)
    assert "Queued, not sent yet" in row_of(text(site, INVITATIONS), waiting.email)


def test_resend_gives_a_new_link_and_cancel_closes_it(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    dana = new_actor("dana")
    first = site.invite(org, dev(owner), dana.email)
    site.get(f"{INVITATIONS}?status=pending")

    resent = site.post(f"{INVITATIONS}/{first.id}/resend", {"status": "pending"})
    assert resent.status_code == 303 and resent.headers["Location"] == f"{INVITATIONS}?status=pending"
    page = text(site, f"{INVITATIONS}?status=pending")
    assert "The invitation was sent again, with a new link" in page
    assert "sent again 1 time" in row_of(page, dana.email)
    with pytest.raises(err.InvitationReplacedError):
        site.services.organizations.preview_invitation(first.secret or "")

    cancelled = site.post(f"{INVITATIONS}/{first.id}/cancel", {"status": "pending"})
    assert cancelled.status_code == 303
    page = text(site, f"{INVITATIONS}?status=pending")
    assert "The invitation was cancelled; its link no longer works." in page and dana.email not in page
    assert invitations_of(site, org)[dana.email].status == "cancelled"
    assert dana.email in text(site, f"{INVITATIONS}?status=cancelled")

    again = site.post(f"{INVITATIONS}/{first.id}/cancel", {"status": "cancelled"})  # a stale page's button
    assert again.headers["Location"] == f"{INVITATIONS}?status=cancelled"
    assert "This invitation is cancelled, not pending." in flash_errors(text(site, f"{INVITATIONS}?status=cancelled"))


def test_invitations_come_in_pages_that_keep_the_status_filter(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_invitations, "PAGE_SIZE", 2)
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    people = [new_actor(f"p{n}") for n in range(3)]
    for person in people:
        site.invite(org, dev(owner), person.email)
    first = text(site, f"{INVITATIONS}?status=pending")
    assert "3 pending invitations" in first
    assert [p.email in first for p in people] == [False, True, True]  # newest first
    following = re.search(r'href="(/settings/invitations\?status=pending&amp;cursor=[^"]+)"', first)
    assert following, first
    second = text(site, following.group(1).replace("&amp;", "&"))
    assert [p.email in second for p in people] == [True, False, False] and "Next page" not in second
    assert site.get(f"{INVITATIONS}?cursor=made-up").status_code == 400


# -- Invite links ----------------------------------------------------------------------------------------------------
def test_a_new_links_url_is_shown_once_the_list_counts_uses_and_deleting_asks_first(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    empty = site.get(LINKS)
    assert "No invite link yet." in empty.get_data(as_text=True)
    assert "script-src" not in empty.headers["Content-Security-Policy"]
    html = empty.get_data(as_text=True)
    for label in (
        'for="link-role">Role<',
        'for="max-uses">Max uses (0 = unlimited)<',
        'for="link-days">Expires in (days)<',
    ):
        assert label in html, label

    created = site.post(
        LINKS, {"role_id": str(system_role_id(org, "developer")), "max_uses": "2", "expires_in_days": "30"}
    )
    assert created.status_code == 303 and created.headers["Location"] == NEW_LINK
    shown = site.get(NEW_LINK)
    page = shown.get_data(as_text=True)
    found = JOIN_URL.search(page)
    assert found, page
    url, code = found.groups()
    assert "The invite link was created." in page and "this page shows it only once" in page
    assert 'data-copy="link-url" hidden' in page and '<script src="/assets/copy.js"></script>' in page
    assert (
        "script-src 'self'" in shown.headers["Content-Security-Policy"]
        and "unsafe-inline" not in shown.headers["Content-Security-Policy"]
    )
    script = site.client.get("/assets/copy.js")
    script.close()
    assert script.status_code == 200

    again = site.get(NEW_LINK)  # once: then it is gone, and the list never shows codes
    assert again.status_code == 303 and again.headers["Location"] == LINKS
    listed = text(site, LINKS)
    assert code not in listed and "/join/" not in listed
    row = row_of(listed, "Developer")
    assert "0 of 2" in row and "Active" in row and f"by {dev(owner).email}" in row

    lee = new_actor("lee")
    site.caught_up(site.services.organizations.accept_invite_link(lee, code))
    assert "1 of 2" in row_of(text(site, LINKS), "Developer")
    assert url.endswith(f"/join/{code}")

    link_id = re.search(r'href="/settings/invite-links/([0-9a-f-]{36})/delete"', listed)
    assert link_id
    confirm = site.get(f"{LINKS}/{link_id.group(1)}/delete")
    assert heading(confirm) == "Delete this Developer invite link?"
    assert "not even people who already have it" in confirm.get_data(as_text=True)
    with site.services.organizations.reading(org) as organization:
        assert not organization.get_invite_link(UUID(link_id.group(1))).deleted  # asking deletes nothing
    deleted = site.post(f"{LINKS}/{link_id.group(1)}/delete", {})
    assert deleted.status_code == 303 and deleted.headers["Location"] == LINKS
    after = text(site, LINKS)
    assert "The invite link was deleted; nobody can join with it any more." in after and "No invite link yet." in after
    with pytest.raises(err.InviteLinkDeletedError):
        site.services.organizations.accept_invite_link(new_actor("late"), code)


def test_invite_link_fields_are_checked_in_words(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    site.get(LINKS)
    for form, words in (
        ({"max_uses": "-1", "expires_in_days": "7"}, "Max uses must be a whole number from 0 to 1000000."),
        ({"max_uses": "0", "expires_in_days": "366"}, "Expires in (days) must be a whole number from 1 to 365."),
        ({"max_uses": "lots", "expires_in_days": "7"}, "Max uses must be a whole number from 0 to 1000000."),
    ):
        refused = site.post(LINKS, {"role_id": str(system_role_id(org, "viewer")), **form})
        assert refused.headers["Location"] == LINKS
        assert words in flash_errors(text(site, LINKS))
    owner_role = site.post(
        LINKS, {"role_id": str(system_role_id(org, "owner")), "max_uses": "0", "expires_in_days": "7"}
    )
    assert owner_role.headers["Location"] == LINKS and flash_errors(text(site, LINKS))  # the domain refuses, in words
    with site.services.organizations.reading(org) as organization:
        assert not organization.links


# -- escaping ---------------------------------------------------------------------------------------------------------
def test_markup_in_names_roles_and_addresses_is_shown_as_text(site: Site) -> None:
    base = new_actor("owner")
    owner = Actor(base.user_id, base.email, "<i>Owner</i>")
    org = owned_organization(site, owner, "<script>alert(1)</script> & Co")
    role = site.caught_up(
        site.services.organizations.create_role(org, dev(owner), "<b>Ops</b>", "<em>d</em>", ["view:members"])
    ).id
    assert role is not None
    odd = f"o'neil&{new_actor('x').email}"
    site.get(INVITE)
    sent = site.post(INVITE, {"email": odd, "role_id": str(role), "expires_in_days": "7"})
    assert sent.headers["Location"] == INVITATIONS, flash_errors(text(site, INVITE))
    site.post(LINKS, {"role_id": str(role), "max_uses": "0", "expires_in_days": "7"}, csrf=False)  # refused: no token
    site.get(LINKS)
    site.post(LINKS, {"role_id": str(role), "max_uses": "0", "expires_in_days": "7"})

    for path in (INVITE, INVITATIONS, LINKS, NEW_LINK):
        html = text(site, path)
        assert "<script>alert" not in html and "<b>Ops" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html, path
    assert "&lt;b&gt;Ops&lt;/b&gt;" in text(site, INVITE)
    invitations = text(site, INVITATIONS)
    assert (
        "o&#39;neil&amp;" in invitations and "&lt;b&gt;Ops&lt;/b&gt;" in invitations and "o'neil&x" not in invitations
    )
    assert "&lt;b&gt;Ops&lt;/b&gt;" in text(site, LINKS)
