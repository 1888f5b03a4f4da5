"""Invitation tokens and invite-link codes, derived with an HMAC.

Events store only a random, public nonce. The token handed to people is

    base64url( version | organization id | item id | HMAC(key, kind, ids, nonce)[:16] )

so it names what it unlocks, cannot be forged without the server's secret
key, and is never readable from the event store or an audit export. A resend
stores a new nonce, which silently invalidates the old token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from uuid import UUID

VERSION = b"\x01"
MAC_BYTES = 16
TOKEN_BYTES = 1 + 16 + 16 + MAC_BYTES
INVITATION = "invitation"
INVITE_LINK = "invite-link"


def new_nonce() -> str:
    """A fresh public nonce for an event (not a secret by itself)."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ParsedToken:
    organization_id: UUID
    item_id: UUID
    mac: bytes


class TokenSigner:
    """Derives and checks tokens with one secret key shared by every process."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("The secret key must have at least 16 bytes.")
        self._key = key

    def derive(self, kind: str, organization_id: UUID, item_id: UUID, nonce: str) -> str:
        mac = self._mac(kind, organization_id, item_id, nonce)
        raw = VERSION + organization_id.bytes + item_id.bytes + mac
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def parse(self, token: str) -> ParsedToken | None:
        """The ids a token claims to unlock, or None when it is not even well formed."""
        if not isinstance(token, str) or len(token) > 100:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != TOKEN_BYTES or raw[:1] != VERSION:
            return None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
            return None  # not the one spelling we hand out (a last character differing in unused bits, `=`s)
        return ParsedToken(UUID(bytes=raw[1:17]), UUID(bytes=raw[17:33]), raw[33:])

    def verify(self, kind: str, parsed: ParsedToken, nonce: str) -> bool:
        """Constant-time comparison against the MAC for the current nonce."""
        expected = self._mac(kind, parsed.organization_id, parsed.item_id, nonce)
        return hmac.compare_digest(expected, parsed.mac)

    def _mac(self, kind: str, organization_id: UUID, item_id: UUID, nonce: str) -> bytes:
        message = f"{kind}|{organization_id}|{item_id}|{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()[:MAC_BYTES]
