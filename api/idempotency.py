"""`Idempotency-Key` on every command (POST, PUT, PATCH, DELETE): a retry never does it twice.

The same key with the same request (method, path, query, body) gets the first
request's answer again, marked `Idempotent-Replayed: true`; the same key with
another request is refused (409 `idempotency_key_reused`); while the first is
still running, a retry is told to wait (409 `idempotency_key_in_use`). Keys
belong to one caller in one organization and are kept at least 24 hours.

If the first request saved its change but could not confirm it (a 503), the
retry does not run the command again: it picks up the saved receipt, waits for
the read models, and answers as the first request would have.

What is kept (the receipt, the answer) can hold an invite link's code, so it
is encrypted with a key derived from MEMBERSHIP_SECRET_KEY (AES-GCM, the
row's scope as associated data).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from flask import Response, g, request
from flask.typing import ResponseReturnValue

from api import idempotency_keys, operator
from api.auth import current_caller
from api.context import services, utc_now
from api.errors import ApiError
from membership import Receipt

log = logging.getLogger(__name__)
HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
RETENTION = timedelta(hours=24)
STALE = timedelta(seconds=60)  # a request still `started` after this died before saving anything
COMMAND_METHODS = ("POST", "PUT", "PATCH", "DELETE")
REPLAYED_HEADERS = ("Content-Type", "Location")


@dataclass
class Pending:
    """This request's claim on its key."""

    scope: str
    receipt: Receipt | None = None  # saved by an earlier attempt, or by this one
    sealed_receipt: str | None = None
    attempted: bool = False  # the command ran (a refusal is then the answer to keep)


def begin() -> ResponseReturnValue | None:
    """Before a command: claim its key, or answer with what the key already did."""
    key = request.headers.get(HEADER)
    if key is None or request.method not in COMMAND_METHODS or not request.path.startswith("/api/"):
        return None
    if request.routing_exception is not None:  # no such route or method: its 404/405, not the key's answer
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            400, "invalid_idempotency_key", f"An {HEADER} has 1 to {MAX_KEY_LENGTH} printable ASCII characters."
        )
    scope = _scope(key)
    fingerprint = _fingerprint()
    record = idempotency_keys.claim(services().read_db, scope, fingerprint, utc_now(), RETENTION, STALE)
    if record is None:
        g.idempotency = Pending(scope)
        return None
    if not hmac.compare_digest(record.fingerprint, fingerprint):
        raise ApiError(409, "idempotency_key_reused", f"This {HEADER} was used for a different request.")
    if record.state == idempotency_keys.DONE and record.payload is not None:
        return _response(_open(scope, record.payload))
    if record.state == idempotency_keys.SAVED and record.payload is not None:
        g.idempotency = Pending(scope, _receipt(_open(scope, record.payload)), record.payload)
        return None
    raise ApiError(
        409, "idempotency_key_in_use", f"A request with this {HEADER} is still running; retry shortly.",
        {"Retry-After": "1"},
    )  # fmt: skip


def saved_receipt() -> Receipt | None:
    """The receipt an earlier attempt with this key saved (its command must not run again)."""
    pending: Pending | None = g.get("idempotency")
    return pending.receipt if pending is not None else None


def attempting() -> None:
    pending: Pending | None = g.get("idempotency")
    if pending is not None:
        pending.attempted = True


def remember(receipt: Receipt) -> None:
    """The command was saved: a retry must pick this receipt up instead of running it again."""
    pending: Pending | None = g.get("idempotency")
    if pending is None or pending.receipt is not None:
        return
    pending.receipt = receipt
    payload = {"organizationId": str(receipt.organization_id), "position": receipt.position,
               "id": str(receipt.id) if receipt.id else None, "secret": receipt.secret}  # fmt: skip
    pending.sealed_receipt = _seal(pending.scope, payload)
    # Still `started` (a concurrent retry waits); `saved` once this request has answered without success.
    idempotency_keys.store(services().read_db, pending.scope, idempotency_keys.STARTED, pending.sealed_receipt, utc_now())


def complete(response: Response) -> Response:
    """After a command: keep its answer for retries, or let a retry run it afresh."""
    pending: Pending | None = g.pop("idempotency", None)
    if pending is None:
        return response
    try:
        _keep(pending, response)
    except Exception as error:  # the answer stands; the key stays `started` (and a receipt, once stale, `saved`)
        log.warning("could not keep what Idempotency-Key request %s did: %s", g.get("request_id"), error)
    return response


def _keep(pending: Pending, response: Response) -> None:
    status = response.status_code
    keep = status < 300 or (pending.attempted and 400 <= status < 500 and status != 429)
    if keep:
        answer = {
            "status": status,
            "headers": {name: response.headers[name] for name in REPLAYED_HEADERS if name in response.headers},
            "body": response.get_data(as_text=True),
        }
        idempotency_keys.store(services().read_db, pending.scope, idempotency_keys.DONE, _seal(pending.scope, answer), utc_now())
    elif pending.sealed_receipt is not None:
        idempotency_keys.store(services().read_db, pending.scope, idempotency_keys.SAVED, pending.sealed_receipt, utc_now())
    else:
        idempotency_keys.forget(services().read_db, pending.scope)


def _scope(key: str) -> str:
    if request.blueprint == operator.blp.name:  # the operators' token, checked before anything is kept
        return hashlib.sha256(f"operator\n{operator.check_operator()}\n{key}".encode()).hexdigest()
    caller = current_caller()
    organization = request.headers.get("X-Organization-Id") or str(caller.claims.get("org_id") or "-")
    text = f"{organization}\n{caller.actor.user_id}\n{key}"
    return hashlib.sha256(text.encode()).hexdigest()


def _fingerprint() -> str:
    """Keyed (HMAC): a plain hash of a body holding an address would let anyone who reads the table test
    guesses of it, also after the person was erased."""
    digest = hmac.new(services().settings.secret_key, b"idempotency-fingerprint\n", hashlib.sha256)
    for part in (request.method, request.path, request.query_string.decode("latin-1")):
        digest.update(part.encode() + b"\n")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _response(answer: dict[str, Any]) -> Response:
    response = Response(answer["body"], status=answer["status"])
    for name, value in answer["headers"].items():
        response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _receipt(saved: dict[str, Any]) -> Receipt:
    return Receipt(
        UUID(saved["organizationId"]), saved["position"], UUID(saved["id"]) if saved["id"] else None, saved["secret"]
    )


def _seal(scope: str, payload: dict[str, Any]) -> str:
    return idempotency_keys.seal(services().settings.secret_key, scope, payload)


def _open(scope: str, payload: str) -> dict[str, Any]:
    return idempotency_keys.open_sealed(services().settings.secret_key, scope, payload)
