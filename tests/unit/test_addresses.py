"""The address rule: what can be delivered is accepted, look-alikes and invisible tricks are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from membership.addresses import parse, validate_email
from membership.exceptions import InvalidValueError
from workers.mail.compose import Invitation, compose

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given_address", "stored", "envelope"),
    [
        ("  Erin@Example.COM ", "erin@example.com", "erin@example.com"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie", "o'brien@example.ie"),
        ("pö@example.com", "pö@example.com", "pö@example.com"),
        ("po\u0308@example.com", "pö@example.com", "pö@example.com"),  # decomposed: stored composed (NFC)
        ("user@Bücher.example", "user@bücher.example", "user@xn--bcher-kva.example"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        ("ñandú@ejemplo.es", "ñandú@ejemplo.es", "ñandú@ejemplo.es"),
        ("αβγ@παράδειγμα.gr", "αβγ@παράδειγμα.gr", "αβγ@xn--hxajbheg2az3al.gr"),
        ("иван@пример.рф", "иван@пример.рф", "иван@xn--e1afmkfd.xn--p1ai"),
        (
            "ひらがなカタカナ漢字abc@例え.jp",
            "ひらがなカタカナ漢字abc@例え.jp",
            "ひらがなカタカナ漢字abc@xn--r8jz45g.jp",
        ),
        ("한국어漢字@example.kr", "한국어漢字@example.kr", "한국어漢字@example.kr"),
        ("हिन्दी@उदाहरण.भारत", "हिन्दी@उदाहरण.भारत", "हिन्दी@xn--p1b6ci4b4b3a.xn--h2brj9c"),
        ("user@مثال.com", "user@مثال.com", "user@xn--mgbh0fb.com"),
    ],
)
def test_deliverable_addresses_are_accepted_normalized(given_address: str, stored: str, envelope: str) -> None:
    assert validate_email(given_address) == stored
    assert parse(stored).envelope == envelope


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("", "one @"),
        ("no-at-sign", "one @"),
        ("two@@example.com", "one @"),
        ("no-domain@", "one @"),
        ("x@localhost", "separated by single dots"),
        ("a@b..com", "separated by single dots"),
        ("a b@example.com", "a space"),
        ("a\u00a0b@example.com", "a space (U+00A0)"),
        ("a..b@example.com", "two dots"),
        (".a@example.com", "begin or end with a dot"),
        ("a,b@example.com", "must not contain ','"),
        ("a<b>@example.com", "must not contain '<'"),
        ("x@x_y.com", "must not contain '_'"),
        ("x@-a.com", "hyphen"),
        ("x@1.2.3.4", "not a number"),
        ("a" * 65 + "@example.com", "longer than 64 bytes"),
        ("ö" * 33 + "@example.com", "longer than 64 bytes"),
        ("x@" + "a" * 64 + ".com", "longer than 63"),
        ("x@" + "bü" * 30 + ".com", "longer than 63"),  # 60 characters, but more than 63 as an A-label
        ("a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com", "longer than 254"),
        ("a\r\nbcc@example.com", "control character (U+000D)"),
        ("a\x00b@example.com", "control character (U+0000)"),
        ("user@example.com\u202e", "bidirectional control character (U+202E)"),
        ("\u202eliame@example.com", "bidirectional control character (U+202E)"),
        ("pay\u200bpal@example.com", "invisible character (U+200B)"),
        ("user@pay\u200dpal.com", "invisible character (U+200D)"),
        ("user@paypal.com\u2060", "invisible character (U+2060)"),
        ("\ufeffuser@paypal.com", "invisible character (U+FEFF)"),
        ("user@p\u0430ypal.com", "mixes Cyrillic and Latin"),  # Cyrillic а in a Latin label
        ("p\u0430ypal@example.com", "mixes Cyrillic and Latin"),
        ("user@xn--pypal-4ve.com", "mixes Cyrillic and Latin"),  # the same, typed as an A-label
        ("\u03b1pple@example.com", "mixes Greek and Latin"),
        ("user@xn--zz-.com", "not a valid IDN A-label"),
        ("\uff50aypal@example.com", "compatibility character"),  # fullwidth p
        ("\U0001d41aapple@example.com", "compatibility character"),  # mathematical bold a
        ("user@straße.de", "changes when written in ASCII"),  # IDNA 2003 would send it to strasse.de
        ("user@例え。jp", "separated by single dots"),
        ("o\u02bcbrien@example.com", "must not contain"),  # a modifier letter posing as an apostrophe
        ("\u0301a@example.com", "must not contain"),  # a combining mark of no script
        ("user@\U0001f600.com", "must not contain"),
    ],
)
def test_undeliverable_or_deceptive_addresses_are_refused_with_the_reason(address: str, why: str) -> None:
    with pytest.raises(InvalidValueError) as refused:
        validate_email(address)
    assert refused.value.field == "email"
    assert why in refused.value.message
    assert "is not a valid e-mail address" in refused.value.message


@pytest.mark.parametrize(
    "address", ["\u0430\u0440\u0435@example.com", "user@\u0430\u0440\u0440\u04cf\u0435.com", "rnicrosoft@example.com"]
)
def test_whole_script_and_same_script_look_alikes_are_not_caught(address: str) -> None:
    """Documented limits: all-Cyrillic "аре"/"аррӏе" look like Latin words, "rn" looks like "m"."""
    assert validate_email(address) == address


def test_the_organization_module_uses_the_address_rule() -> None:
    from membership import organization

    assert organization.validate_email(" Pö@Bücher.Example ") == "pö@bücher.example"
    with pytest.raises(InvalidValueError, match="mixes Cyrillic and Latin"):
        organization.validate_email("user@p\u0430ypal.com")


# -- the property: what the rule accepts, the mailer can send ---------------------------------------------------
ALPHABETS = [
    "abcxyz019!#$%&'*+-/=?^_`{|}~",
    "abcöüßñéø",
    "абвгдеёжя",
    "αβγδεζηθλ",
    "漢字日本語ひらがなカタカナー",
    "한국어漢字",
    "हिन्दीकखग",
    "مثالعربي١٢",
    'abcаαｐ\u200b\u202e\r\n \u00a0\u0301\u02bc\U0001d41a\ufeff<>,()[]"\\',  # trouble, mixed in
]
words = st.sampled_from(ALPHABETS).flatmap(lambda alphabet: st.text(alphabet, min_size=1, max_size=12))
local_parts = st.lists(words, min_size=1, max_size=3).map(".".join)
domains = st.tuples(st.lists(words, min_size=1, max_size=3), st.sampled_from(["com", "jp", "рф", "xn--p1ai"])).map(
    lambda parts: ".".join([*parts[0], parts[1]])
)
candidates = st.tuples(local_parts, domains).map("@".join) | st.text(max_size=40)


@settings(max_examples=400, deadline=None)
@given(candidates)
def test_every_accepted_address_composes_with_an_envelope_that_needs_smtputf8_only_for_its_local_part(
    candidate: str,
) -> None:
    try:
        stored = validate_email(candidate)
    except InvalidValueError:
        event("refused")
        return
    event("accepted, needs SMTPUTF8" if not stored.partition("@")[0].isascii() else "accepted, ASCII envelope")
    assert validate_email(stored) == stored  # normalizing is idempotent
    invitation = Invitation("Acme", "Olivia", "Viewer", stored, NOW, "https://ocore.example.com/invite/accept?t=x")
    outgoing = compose(invitation, "oCore <no-reply@ocore.example.com>", "<id@ocore.example.com>", NOW)
    local, _, domain = outgoing.recipient.rpartition("@")
    assert domain.isascii() and domain == stored.rpartition("@")[2].encode("idna").decode()
    assert outgoing.smtputf8 == (not local.isascii())
    headers = outgoing.data.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii() or outgoing.smtputf8  # the domain goes in A-labels in the To header too
