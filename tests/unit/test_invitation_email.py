"""The invitation e-mail as a mail reader sees it: any stored name round-trips, the message is valid SMTP."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membership.text import text_problem
from workers.mail.compose import CompositionError, Invitation, compose

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SENDER = "oCore <no-reply@ocore.example.com>"
MESSAGE_ID = "<invitation.b9133493-022c-470e-80ab-16594f66334d.38875b3a77bf465a@ocore.example.com>"
URL = "https://ocore.example.com/invite/accept?token=abc_DEF-123"
# Names as they are stored: the text rule (no NUL, control or bidi characters), whitespace folded (a name never
# starts or ends with it: person_name, check_organization_name, check_role_text), up to 200 characters.
names = (
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=200)
    .map(lambda t: " ".join(t.split()))
    .filter(lambda t: bool(t) and text_problem(t) is None)
)


@settings(max_examples=100, deadline=None)
@given(inviter=names, organization=names, role=names)
def test_any_stored_name_reads_back_exactly_from_a_7_bit_message(inviter: str, organization: str, role: str) -> None:
    invitation = Invitation(organization, inviter, role, "erin@example.com", NOW, URL)

    outgoing = compose(invitation, SENDER, MESSAGE_ID, NOW)

    assert not outgoing.smtputf8
    assert outgoing.data.isascii()
    assert all(len(line) <= 998 for line in outgoing.data.split(b"\r\n"))  # SMTP's line limit
    assert b"\n" not in outgoing.data.replace(b"\r\n", b"")  # CRLF only
    read = email.message_from_bytes(outgoing.data, policy=policy.default)
    assert read["Subject"] == f"{inviter} invited you to join {organization} on oCore"
    assert (read["From"], read["To"], read["Message-ID"]) == (SENDER, "erin@example.com", MESSAGE_ID)
    plain = read.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"{inviter} invited you to join {organization} on oCore as {role}." in plain.replace("\n", " ")
    assert URL in plain.splitlines()
    rich = read.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert 'href="https://ocore.example.com/invite/accept?token=abc_DEF-123"' in rich


def test_a_unicode_local_part_goes_out_in_utf_8_headers() -> None:
    outgoing = compose(Invitation("Acme", "Zoë", "Viewer", "pö@bücher.example", NOW, URL), SENDER, MESSAGE_ID, NOW)

    assert outgoing.smtputf8 and outgoing.recipient == "pö@xn--bcher-kva.example"
    read = email.message_from_bytes(outgoing.data, policy=policy.SMTPUTF8)
    assert (read["To"], read["Subject"]) == ("pö@bücher.example", "Zoë invited you to join Acme on oCore")


def test_a_sender_name_outside_ascii_is_encoded_and_reads_back() -> None:
    outgoing = compose(Invitation("Acme", "Olivia", "Viewer", "erin@example.com", NOW, URL),
                       "Équipe oCore <no-reply@bücher.example>", MESSAGE_ID, NOW)  # fmt: skip

    assert outgoing.data.isascii() and outgoing.sender == "no-reply@xn--bcher-kva.example"
    assert email.message_from_bytes(outgoing.data, policy=policy.default)["From"] == (
        "Équipe oCore <no-reply@xn--bcher-kva.example>"
    )


@pytest.mark.parametrize("name", ["Olivia\r\nBcc: victim@example.com", "Olivia\nX-Injected: 1"])
def test_a_line_break_in_a_name_cannot_add_a_header(name: str) -> None:
    with pytest.raises(CompositionError, match="line break"):
        compose(Invitation("Acme", name, "Viewer", "erin@example.com", NOW, URL), SENDER, MESSAGE_ID, NOW)
