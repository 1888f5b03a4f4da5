"""Settings > Audit log over HTTP: each event as a sentence, filters (type, actor, dates) and paging like
GET /api/audit-log, the export as CSV and JSON Lines, the API's permission; markup stays text, and a filter the
page cannot use is a message beside the form, never a server error."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from uuid import UUID

import pytest

from membership.organization import system_role_id
from projections import audit as audit_reads
from tests.factories import new_actor
from tests.web.conftest import Site, heading
from tests.web.test_console_invitations import ScriptedTransport, until
from tests.web.test_console_members import dev, joined, member_id, owned_organization
from web import audit_sentences, console_audit

AUDIT = "/settings/audit-log"
EXPORT = "/settings/audit-log/export"
CLI_CSV_COLUMNS = ["position", "occurredAt", "type", "actorId", "actorEmail", "targetType", "targetId", "targetLabel",
                   "details"]  # fmt: skip
SENTENCE = re.compile(r'<td class="said">(.*?)<br>', re.S)


def sentences(site: Site, path: str = AUDIT) -> list[str]:
    """The page's sentences, newest first (markup as sent)."""
    response = site.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return [" ".join(s.split()) for s in SENTENCE.findall(response.get_data(as_text=True))]


def problems(html: str) -> list[str]:
    alert = re.search(r'<div class="flash error" role="alert">(.*?)</div>', html, re.S)
    assert alert, html[:2000]
    return [" ".join(p.split()) for p in re.findall(r"<li>(.*?)</li>", alert.group(1), re.S)]


def recorded(site: Site, org: UUID, event_type: str, count: int = 1) -> None:
    """Wait until the audit log holds `count` events of `event_type` (the mailer's arrive on their own)."""
    until(lambda: len(audit_reads.audit_page(site.services.read_db, org, event_type=event_type)) >= count)


# -- sentences ---------------------------------------------------------------------------------------------------------
def test_every_common_event_reads_as_a_sentence_newest_first(site: Site) -> None:
    assert site.services.mailer is not None
    site.services.mailer.transport = ScriptedTransport()
    apps, owner = site.services.organizations, new_actor("owner")
    org = owned_organization(site, owner)
    me = dev(owner)
    carol, bounce, dave = new_actor("carol"), new_actor("bounce"), new_actor("dave")
    invited = site.invite(org, me, carol.email, "developer")
    bounced = site.invite(org, me, bounce.email, "viewer")
    recorded(site, org, "InvitationEmailFailed")
    recorded(site, org, "InvitationEmailSent")
    resent = site.caught_up(apps.resend_invitation(org, me, invited.id or UUID(int=0)))
    site.caught_up(apps.accept_invitation(dev(carol), resent.secret or ""))
    site.caught_up(apps.cancel_invitation(org, me, bounced.id or UUID(int=0)))
    link = site.link(org, me, "viewer", max_uses=3)
    site.caught_up(apps.accept_invite_link(dev(dave), link.secret or ""))
    site.caught_up(apps.delete_invite_link(org, me, link.id or UUID(int=0)))
    dave_id = UUID(member_id(site, org, dave))
    site.caught_up(apps.change_role(org, me, dave_id, system_role_id(org, "admin")))
    role = site.caught_up(apps.create_role(org, me, "Ops", "", ["view:members"]))
    site.caught_up(apps.update_role(org, me, role.id or UUID(int=0), name="Ops team"))
    site.caught_up(apps.delete_role(org, me, role.id or UUID(int=0)))
    site.caught_up(apps.remove_member(org, me, dave_id))
    site.caught_up(apps.leave(org, dev(carol)))
    erin = joined(site, org, owner, "admin", "erin")
    site.caught_up(apps.transfer_ownership(org, me, UUID(member_id(site, org, erin))))
    site.caught_up(apps.record_skipped_event(org, "root", "members", 12, "RoleChanged", "a row it could not apply"))

    said = sentences(site)
    o = owner.email
    expected = [
        "an operator (root) skipped event 12 (RoleChanged) in the members read model, because: a row it could not apply",
        f"{o} made {erin.email} the Owner and became Admin",
        f"{carol.email} left the organization",
        f"{o} removed {dave.email} from the organization",
        f"{o} deleted the role Ops team",
        f"{o} updated the role Ops team",
        f"{o} created the role Ops",
        f"{o} changed {dave.email}'s role from Viewer to Admin",
        f"{o} deleted the invite link for Viewer",
        f"{dave.email} joined through an invite link as Viewer",
        f"{o} created an invite link for Viewer, usable 3 times",
        f"{o} cancelled the invitation to {bounce.email}",
        f"{carol.email} accepted the invitation and joined as Developer",
        f"{o} sent the invitation to {carol.email} again, with a new link",
        f"the mailer sent the invitation e-mail to {carol.email}",
        f"the mailer could not deliver the invitation e-mail to {bounce.email}: 550 5.1.1 &lt;b&gt;No&lt;/b&gt; such user",
        f"{o} invited {bounce.email} as Viewer",
        f"{o} invited {carol.email} as Developer",
        f"{o} joined as Owner on creating the organization",
        f"{o} created the organization Acme",
    ]
    for sentence in expected:
        assert sentence in said, (sentence, said)
    assert said.index(expected[0]) < said.index(expected[-2]) < said.index(expected[-1])  # newest first
    html = site.last_page
    assert '<time datetime="' in html and "UTC</time>" in html
    assert '<a href="/settings/audit-log" aria-current="page">Audit log</a>' in html


def test_a_type_without_a_sentence_or_a_row_missing_a_field_reads_generically(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    dana = joined(site, org, owner, "viewer", "dana")
    site.caught_up(site.services.organizations.change_role(org, dev(owner), UUID(member_id(site, org, dana)),
                                                           system_role_id(org, "developer")))  # fmt: skip
    monkeypatch.delitem(audit_sentences.SENTENCES, "RoleChanged")  # as a type added after this page was written
    monkeypatch.setitem(audit_sentences.SENTENCES, "MemberInvited", ("Member invited", "{actor} invited {nowhere}"))
    said = sentences(site)
    assert f"Role changed by {owner.email} (member: {dana.email})" in said
    assert f"Member invited by {owner.email} (invitation: {dana.email})" in said


def test_the_type_filter_offers_every_event_of_the_domain() -> None:
    offered = dict(audit_sentences.event_types())
    for name in ("Created", "MemberInvited", "RoleChanged", "InvitationEmailFailed", "EventSkipped"):
        assert name in offered
    assert offered["RoleChanged"] == "Role changed" and len(offered) == len(set(offered))


# -- filters and paging ------------------------------------------------------------------------------------------------
def test_filters_by_type_actor_and_days(site: Site) -> None:
    assert site.services.mailer is not None
    site.services.mailer.stop()  # its outcome for Dana's e-mail would come at any time, even 3 days on
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    first_day = site.clock().date()
    dana = joined(site, org, owner, "viewer", "dana")
    site.clock.advance(days=3)
    site.caught_up(site.services.organizations.change_role(org, dev(owner), UUID(member_id(site, org, dana)),
                                                           system_role_id(org, "admin")))  # fmt: skip
    changed = f"{owner.email} changed {dana.email}'s role from Viewer to Admin"
    joined_sentence = f"{dana.email} accepted the invitation and joined as Viewer"

    assert sentences(site, f"{AUDIT}?type=RoleChanged") == [changed]
    assert '<option value="RoleChanged" selected>Role changed</option>' in site.last_page
    assert sentences(site, f"{AUDIT}?actor={dana.email.upper()}") == [joined_sentence]  # an e-mail, any case
    assert sentences(site, f"{AUDIT}?actor=dev:{dana.email}") == [joined_sentence]  # or a user id
    assert sentences(site, f"{AUDIT}?since={first_day + timedelta(days=2)}") == [changed]
    on_first_day = sentences(site, f"{AUDIT}?until={first_day}")  # the Until day is included
    assert joined_sentence in on_first_day and changed not in on_first_day
    assert sentences(site, f"{AUDIT}?since={first_day}&until={first_day}&type=RoleChanged") == []
    assert "No event matches." in site.last_page
    assert sentences(site, f"{AUDIT}?until=9999-12-31")[0] == changed  # the last day there is


def test_paging_keeps_the_filters_and_goes_back_in_time(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_audit, "PAGE_SIZE", 2)
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    people = [new_actor(f"p{n}") for n in range(5)]
    for person in people:
        site.invite(org, dev(owner), person.email, "viewer")
    seen: list[str] = []
    path: str | None = f"{AUDIT}?type=MemberInvited"
    for _ in range(3):  # 5 invitations, 2 a page
        assert path is not None
        seen += sentences(site, path)
        found = re.search(r'<a href="(/settings/audit-log\?[^"]*cursor=[^"]+)">Next page</a>', site.last_page)
        path = found.group(1).replace("&amp;", "&") if found else None
        assert path is None or "type=MemberInvited" in path
    assert path is None and ">Newest events</a>" in site.last_page
    assert seen == [f"{owner.email} invited {p.email} as Viewer" for p in reversed(people)]


# -- export ------------------------------------------------------------------------------------------------------------
def test_the_export_streams_every_matching_event_as_csv_in_the_cli_s_columns(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner, 'Acme <b>"Labs"</b>; x.csv')
    dana = joined(site, org, owner, "viewer", "dana")
    formula = site.caught_up(site.services.organizations.create_role(org, dev(owner), "=HYPERLINK(1)", "", []))
    assert formula.id is not None
    site.caught_up(site.services.organizations.change_role(org, dev(owner), UUID(member_id(site, org, dana)),
                                                           formula.id))  # fmt: skip
    page = site.get(AUDIT).get_data(as_text=True)
    assert f'href="{EXPORT}?format=csv"' in page and f'href="{EXPORT}?format=jsonl"' in page

    response = site.get(f"{EXPORT}?format=csv&type=RoleChanged")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="acme-b-labs-b-x-csv-audit-log-\d{4}-\d{2}-\d{2}\.csv"', disposition)
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == CLI_CSV_COLUMNS and len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert (row["type"], row["actorId"], row["actorEmail"]) == ("RoleChanged", dev(owner).user_id, owner.email)
    assert row["targetLabel"] == dana.email
    assert json.loads(row["details"])["role"] == "=HYPERLINK(1)"  # in JSON: text to any spreadsheet
    everything = list(csv.reader(io.StringIO(site.get(f"{EXPORT}?format=csv").get_data(as_text=True))))
    assert [r[2] for r in everything[1:3]] == ["Created", "MemberJoined"]  # oldest first, every event
    role_created = next(r for r in everything if r[2] == "RoleCreated")
    assert role_created[7] == "'=HYPERLINK(1)"  # a label a spreadsheet would run is kept as text


def test_the_export_reads_a_page_of_the_log_at_a_time_as_it_sends(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    for n in range(4):
        site.invite(org, dev(owner), new_actor(f"p{n}").email)
    pages_read: list[int] = []
    read_page = audit_reads.audit_page
    monkeypatch.setattr(audit_reads, "audit_page", lambda *a, **k: pages_read.append(1) or read_page(*a, **k))
    monkeypatch.setattr(console_audit, "EXPORT_PAGE_SIZE", 2)
    monkeypatch.setattr(console_audit, "CHUNK", 1)  # a chunk a line
    response = site.client.get(f"{EXPORT}?format=jsonl&type=MemberInvited")
    read_as_sent = [len(pages_read) for _chunk in response.response]  # pages read when each line went out
    assert read_as_sent == [1, 1, 2, 2]  # 4 events, 2 a page (and a last, empty page read after them)
    assert len(pages_read) == 3


def test_the_export_as_json_lines_is_the_api_s_json_of_each_event(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    joined(site, org, owner, "developer", "dana")
    response = site.get(f"{EXPORT}?format=jsonl&actor={owner.email}")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response.headers["Content-Disposition"].endswith(
        "-audit-log-" + site.clock().strftime("%Y-%m-%d") + '.jsonl"'
    )
    lines = response.get_data(as_text=True).splitlines()
    expected = [e.as_json() for e in audit_reads.iter_audit(site.services.read_db, org, actor=owner.email)]
    assert [json.loads(line) for line in lines] == expected and len(expected) == 3  # created, joined, invited
    assert lines[0] == json.dumps(expected[0], sort_keys=True)


def test_an_export_in_no_known_format_or_with_a_bad_filter_is_a_message(site: Site) -> None:
    owner = new_actor("owner")
    owned_organization(site, owner)
    for query in ("format=xml", "", "format=csv&since=yesterday"):
        response = site.get(f"{EXPORT}?{query}")
        assert response.status_code == 400 and "Content-Disposition" not in response.headers
        assert heading(response) == "Audit log" and problems(response.get_data(as_text=True))


# -- who may see it ----------------------------------------------------------------------------------------------------
def test_only_those_who_may_manage_members_see_the_log_as_with_the_api(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner)
    developer = joined(site, org, owner, "developer", "dev")
    admin = joined(site, org, owner, "admin", "admin")
    for person, allowed in ((developer, False), (admin, True)):
        site.get("/settings/members")
        site.post("/auth/logout", {})
        site.sign_in(person)
        for path in (AUDIT, f"{EXPORT}?format=csv"):
            response = site.get(path)
            if allowed:
                assert response.status_code == 200, path
                continue
            assert response.status_code == 403 and heading(response) == "This page is not for you"
            assert "requires the manage:members permission" in response.get_data(as_text=True)
            assert "Content-Disposition" not in response.headers


# -- markup and bad input ----------------------------------------------------------------------------------------------
def test_markup_in_names_roles_and_filters_stays_text(site: Site) -> None:
    owner = new_actor("owner")
    org = owned_organization(site, owner, "<script>alert(1)</script> Inc")
    dana = joined(site, org, owner, "viewer", "dana")
    role = site.caught_up(site.services.organizations.create_role(org, dev(owner), '<img src=x onerror="x()">', "", []))
    site.caught_up(site.services.organizations.change_role(org, dev(owner), UUID(member_id(site, org, dana)),
                                                           role.id or UUID(int=0)))  # fmt: skip
    html = site.get(AUDIT).get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "created the organization &lt;script&gt;alert(1)&lt;/script&gt; Inc" in html
    assert "role from Viewer to &lt;img src=x onerror=&#34;x()&#34;&gt;" in html
    typed = site.get(f"{AUDIT}?actor=%22%3E%3Cscript%3Ex()%3C/script%3E").get_data(as_text=True)
    assert 'value="&#34;&gt;&lt;script&gt;x()&lt;/script&gt;"' in typed and "<script>x()" not in typed


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("type=NoSuchEvent", "Choose an event type from the list."),
        ("since=31/01/2025", "Since must be a date, such as 2025-01-31."),
        ("until=2025-02-30", "Until must be a date, such as 2025-01-31."),
        ("since=2025-02-02&until=2025-02-01", "Since must be on or before Until."),
        (
            "actor=a%00b",
            "Actor must be an e-mail address or a user id of at most 254 characters, without a control "
            "character (U+0000).",
        ),  # fmt: skip
        ("actor=" + "a" * 255, "Actor must be an e-mail address or a user id of at most 254 characters."),
        ("cursor=not*a*cursor", "That page of the audit log does not exist: start again from the newest events."),
        ("cursor=WzEsIDJd", "That page of the audit log does not exist: start again from the newest events."),
    ],
)
def test_a_filter_the_page_cannot_use_is_said_beside_the_form(site: Site, query: str, problem: str) -> None:
    owner = new_actor("owner")
    owned_organization(site, owner)
    response = site.get(f"{AUDIT}?{query}")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and heading(response) == "Audit log"
    assert problems(html) == [problem] and 'name="actor"' in html and "<tbody>" not in html


def test_someone_signed_out_is_sent_to_sign_in(site: Site) -> None:
    for path in (AUDIT, f"{EXPORT}?format=csv"):
        response = site.get(path)
        assert response.status_code == 303 and response.headers["Location"].startswith("/auth/login?next=")


def test_the_actor_of_a_service_part_is_named_in_words() -> None:
    assert audit_sentences.actor_in_words("system:mailer", "") == "the mailer"
    assert audit_sentences.actor_in_words("operator:root", "") == "an operator (root)"
    assert audit_sentences.actor_in_words("dev:a@b.io", "a@b.io") == "a@b.io"
    assert audit_sentences.actor_in_words("user-1", "") == "user-1"


def test_an_unknown_type_is_named_from_its_class_name() -> None:
    assert audit_sentences.type_name("OrganizationRenamed") == "Organization renamed"
    assert audit_sentences.type_name("RoleChanged") == "Role changed"
