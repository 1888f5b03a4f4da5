"""What an e-mail address must be to be stored and delivered.

ASCII addresses are a dot-atom local part (RFC 5322) at a host name of letters,
digits and hyphens. Internationalized addresses (RFC 6531/6532) are allowed too:
a local part of letters, digits and marks of one script (plus the ASCII
specials), and IDN domains that the standard library's IDNA codec turns into
A-labels and back unchanged (so `straße` is refused: IDNA 2003 would send it to
`strasse`). Addresses are trimmed, lower-cased and put in Unicode NFC form.

Against look-alikes, each local part and each domain label must use one script,
or a mix real writing uses (UTS #39 "highly restrictive": Latin with Han,
Hiragana and Katakana; with Han and Hangul; with Han and Bopomofo). The script
is read from the character's Unicode name. This catches `pаypal.com` with a
Cyrillic "а", Latin mixed with Greek, compatibility look-alikes (fullwidth
`ｐaypal`, mathematical 𝐚), typed A-labels hiding a mixed label
(`xn--pypal-4ve`), and invisible characters (zero-width spaces and joiners,
U+2060, U+FEFF, bidi marks and controls). It does not catch whole-script
look-alikes (`аре.com` written all in Cyrillic), look-alikes inside one script
(`rn`/`m`, `0`/`o`, Latin `ɑ`), or labels of different scripts side by side.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from membership import exceptions as err
from membership.text import text_problem

MAX_ADDRESS_OCTETS = 254
MAX_LOCAL_OCTETS = 64
MAX_LABEL_OCTETS = 63
SPECIALS = frozenset("!#$%&'*+-/=?^_`{|}~")
ASCII_LETTERS_DIGITS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
WRITING_SYSTEMS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA", "KANA"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
)
# Unicode name prefixes that are not script names, mapped to the script they belong to.
SCRIPT_ALIASES = {
    "CJK": "HAN",
    "IDEOGRAPHIC": "HAN",
    "KATAKANA-HIRAGANA": "KANA",
    "ARABIC-INDIC": "ARABIC",
    "EXTENDED": "ARABIC",  # EXTENDED ARABIC-INDIC DIGIT ...
}
NO_SCRIPT = frozenset({"COMBINING", "MODIFIER", "VARIATION"})


@dataclass(frozen=True)
class Address:
    """A valid address, split; `ascii_domain` is the domain in A-labels (what the envelope carries)."""

    local: str
    domain: str
    ascii_domain: str

    @property
    def envelope(self) -> str:
        """The form for SMTP's MAIL FROM / RCPT TO: ASCII unless the local part is not."""
        return f"{self.local}@{self.ascii_domain}"

    @property
    def needs_smtputf8(self) -> bool:
        return not self.local.isascii()


class AddressError(ValueError):
    """Why a string is not a deliverable address, in words (`str(error)`)."""


def normalize(email: str) -> str:
    return unicodedata.normalize("NFC", email.strip().lower())


def validate_email(email: str) -> str:
    """`email` trimmed, lower-cased and in NFC form, or InvalidValueError saying what is wrong with it."""
    normalized = normalize(email)
    try:
        parse(normalized)
    except AddressError as problem:
        shown = repr(email) if len(email) <= MAX_ADDRESS_OCTETS else "This"
        raise err.InvalidValueError(f"{shown} is not a valid e-mail address: {problem}.", field="email") from None
    return normalized


def parse(address: str) -> Address:
    """An address already normalized, split and converted; AddressError if it cannot be delivered."""
    _check_characters(address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "@" in local:
        raise AddressError("it must have one @ with a name before it and a domain after it")
    _check_local(local)
    result = Address(local, domain, _ascii_domain(domain))
    if len(result.envelope.encode()) > MAX_ADDRESS_OCTETS:
        raise AddressError(f"it is longer than {MAX_ADDRESS_OCTETS} bytes")
    return result


def _check_characters(address: str) -> None:
    problem = text_problem(address)
    if problem is not None:
        raise AddressError(f"it contains {problem}")
    if address.isascii():
        if " " in address:
            raise AddressError("it contains a space")
        return
    for character in address:
        if unicodedata.category(character) == "Cf":
            raise AddressError(f"it contains an invisible character (U+{ord(character):04X})")
        if unicodedata.category(character)[0] == "Z":
            raise AddressError(f"it contains a space (U+{ord(character):04X})")
    if unicodedata.normalize("NFKC", address) != address:
        raise AddressError("it contains a compatibility character (a fullwidth, styled or composed look-alike)")


def _check_local(local: str) -> None:
    if len(local.encode()) > MAX_LOCAL_OCTETS:
        raise AddressError(
            f"the part before the @ is longer than {MAX_LOCAL_OCTETS} bytes (a letter outside ASCII takes 2 to 4)"
        )
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressError("the part before the @ must not begin or end with a dot or have two dots in a row")
    for character in local:
        if character != "." and character not in SPECIALS:
            _check_word_character(character, "the part before the @")
    _check_scripts(local, "the part before the @")


def _ascii_domain(domain: str) -> str:
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        raise AddressError("the domain must be names separated by single dots, like example.com")
    if labels[-1].isdigit():
        raise AddressError("the domain must end in a name, not a number")
    return ".".join(_ascii_label(label) for label in labels)


def _ascii_label(label: str) -> str:
    """One domain label in A-label form, checked as the Unicode label it stands for."""
    unicode_label = label
    if label.startswith("xn--"):
        try:
            unicode_label = label.encode().decode("idna")
        except UnicodeError:
            raise AddressError(f"the domain label {label!r} is not a valid IDN A-label") from None
    if unicode_label.startswith("-") or unicode_label.endswith("-"):
        raise AddressError(f"the domain label {unicode_label!r} must not begin or end with a hyphen")
    for character in unicode_label:
        if character != "-":
            _check_word_character(character, f"the domain label {unicode_label!r}")
    _check_scripts(unicode_label, f"the domain label {unicode_label!r}")
    a_label = label if label.isascii() else _to_a_label(label)
    if len(a_label) > MAX_LABEL_OCTETS:
        raise _too_long(label)
    return a_label


def _too_long(label: str) -> AddressError:
    return AddressError(f"the domain label {label!r} is longer than {MAX_LABEL_OCTETS} characters in ASCII form")


def _to_a_label(label: str) -> str:
    try:
        a_label = label.encode("idna").decode("ascii")
        same = a_label.encode().decode("idna") == label
    except UnicodeError:
        if len(b"xn--" + label.encode("punycode")) > MAX_LABEL_OCTETS:
            raise _too_long(label) from None
        raise AddressError(f"the domain label {label!r} cannot be written in ASCII (IDNA)") from None
    if not same:
        raise AddressError(f"the domain label {label!r} changes when written in ASCII (IDNA); write it as registered")
    return a_label


def _check_word_character(character: str, where: str) -> None:
    """Letters and digits (ASCII or of a script), and the marks scripts write with."""
    if character in ASCII_LETTERS_DIGITS:
        return
    if character.isascii():
        raise AddressError(f"{where} must not contain {character!r}")
    if unicodedata.category(character)[0] not in "LNM" or script(character) is None:
        raise AddressError(f"{where} must not contain {character!r} (U+{ord(character):04X})")


def script(character: str) -> str | None:
    """The script of a letter, digit or mark by its Unicode name; None for ASCII digits and marks of no script."""
    if character.isascii():
        return "LATIN" if character.isalpha() else None
    first = unicodedata.name(character, "COMBINING").split(" ", 1)[0]
    return None if first in NO_SCRIPT else SCRIPT_ALIASES.get(first, first)


def _check_scripts(word: str, where: str) -> None:
    scripts = {s for s in map(script, word) if s is not None}
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in WRITING_SYSTEMS):
        names = " and ".join(sorted(s.title() for s in scripts))
        raise AddressError(f"{where} mixes {names} letters, which can make it look like another address")
