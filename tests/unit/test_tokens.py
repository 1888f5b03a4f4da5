"""Tokens and link codes have one spelling: another that decodes to the same bytes is not a valid token."""

from __future__ import annotations

import base64
from uuid import uuid4

import pytest

from membership.tokens import INVITATION, TokenSigner

SIGNER = TokenSigner(b"k" * 32)


def test_a_token_parses_back_to_what_it_names() -> None:
    organization_id, item_id = uuid4(), uuid4()
    token = SIGNER.derive(INVITATION, organization_id, item_id, "nonce")
    parsed = SIGNER.parse(token)
    assert parsed is not None and (parsed.organization_id, parsed.item_id) == (organization_id, item_id)
    assert SIGNER.verify(INVITATION, parsed, "nonce") and not SIGNER.verify(INVITATION, parsed, "other")


@pytest.mark.parametrize("spelling", ["unused bits of the last character", "padding"])
def test_another_spelling_of_the_same_bytes_is_refused(spelling: str) -> None:
    token = SIGNER.derive(INVITATION, uuid4(), uuid4(), "nonce")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if spelling == "padding":
        other = token + "=" * (-len(token) % 4)
    else:  # the last character carries 2 bits of the 49 bytes: its 4 low bits are unused
        last = alphabet.index(token[-1])
        other = token[:-1] + alphabet[last ^ 0b0001]
    assert other != token
    assert base64.urlsafe_b64decode(other + "=" * (-len(other) % 4)) == base64.urlsafe_b64decode(token + "===")
    assert SIGNER.parse(other) is None
