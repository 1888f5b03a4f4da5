"""What every stored string must be: text a person can read, with nothing hidden in it.

Names, e-mails, role names and descriptions, and the identities taken from
tokens end up in events (forever), in SQL columns (PostgreSQL refuses NUL in
`text`), in e-mail headers (CR/LF inject headers) and on pages (bidi overrides
disguise what is shown). One rule refuses all of that at the door: no control
characters (C0, DEL, C1: NUL, CR, LF and TAB included), no lone surrogates
(not encodable as UTF-8), no explicit bidirectional embeddings, overrides or
isolates.
"""

from __future__ import annotations

import unicodedata

from membership import exceptions as err

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored, in words, or None when it can."""
    if value.isascii() and value.isprintable():
        return None  # the common case, without a loop in Python
    for character in value:
        category = unicodedata.category(character)
        if category == "Cc":
            return f"a control character (U+{ord(character):04X})"
        if category == "Cs":
            return f"an unpaired surrogate (U+{ord(character):04X}), which is not valid Unicode"
        if character in BIDI_CONTROLS:
            return f"a bidirectional control character (U+{ord(character):04X})"
    return None


def check_text(value: str, field: str, label: str | None = None) -> str:
    """`value` unchanged, or InvalidValueError naming `field` (the API's name for it)."""
    problem = text_problem(value)
    if problem is not None:
        raise err.InvalidValueError(f"{label or field} must not contain {problem}.", field=field)
    return value
