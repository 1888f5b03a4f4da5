"""The projections' lean decoder gives what the library's mapper gives, on every stored event.

Its one documented difference: UUID-typed fields other than `originator_id` hold
canonical text, so those are compared as `str()`. With a compressor or a cipher
configured the decoder hands over to the mapper, which these cases pin down too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, Notification
from eventsourcing.utils import get_topic

from membership import Organizations
from projections.engine.decoding import ProjectionDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures"
ZLIB = {"COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"}
AES = {"CIPHER_TOPIC": get_topic(AESCipher), "CIPHER_KEY": AESCipher.create_key(16)}


class Gadget(Aggregate):
    """Test-only: an event at class_version 2 whose stored events are still version 1."""

    class Assigned(Aggregate.Event):
        class_version = 2
        member_id: UUID  # "member" in version 1
        note: str  # new in version 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["member_id"] = state.pop("member")
            state["note"] = ""


MEMBER = UUID("6d2f0c52-93a4-4f0e-8d51-2b1f6a0e9c17")
ASSIGNED_V1 = {
    "originator_id": "9c4b6f0e-2a1d-4e57-b3c8-0d9e8f7a6b5c",
    "originator_version": 2,
    "topic": get_topic(Gadget.Assigned),
    "state": json.dumps(
        {
            "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-05T09:01:00+00:00"},
            "member": {"_type_": "uuid_hex", "_data_": MEMBER.hex},
        }
    ),
}


def stored_rows() -> list[dict[str, Any]]:
    rows = [
        json.loads(line)
        for fixture in sorted(FIXTURES.glob("organization_events_v*.jsonl"))
        for line in fixture.read_text().splitlines()
    ]
    return [*rows, ASSIGNED_V1]


def notifications(mapper: Mapper[Any]) -> Iterator[Notification]:
    """Each row as the application would have stored it: compressed, then encrypted, when configured."""
    for position, row in enumerate(stored_rows(), start=1):
        state = row["state"].encode()
        if mapper.compressor:
            state = mapper.compressor.compress(state)
        if mapper.cipher:
            state = mapper.cipher.encrypt(state)
        yield Notification(
            id=position,
            originator_id=UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=state,
        )


def textual(value: Any) -> Any:
    """`value` with every UUID inside it as its canonical text."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {key: textual(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(textual(item) for item in value)
    return value


@pytest.fixture(params=[{}, ZLIB, AES, {**ZLIB, **AES}], ids=["plain", "zlib", "aes", "zlib+aes"])
def mapper(request: pytest.FixtureRequest) -> Iterator[Mapper[Any]]:
    app = Organizations(env=request.param)
    assert bool(app.mapper.compressor) == ("COMPRESSOR_TOPIC" in request.param)
    assert bool(app.mapper.cipher) == ("CIPHER_KEY" in request.param)
    yield app.mapper
    app.close()


def test_the_decoder_equals_the_mapper_on_every_stored_event(mapper: Mapper[Any]) -> None:
    decoder = ProjectionDecoder(mapper)
    for notification in notifications(mapper):
        expected, decoded = mapper.to_domain_event(notification), decoder.decode(notification)
        assert type(decoded) is type(expected), notification.topic
        assert isinstance(decoded.originator_id, UUID) and decoded.originator_id == expected.originator_id
        assert textual(vars(decoded)) == textual(vars(expected)), notification.topic


def test_both_upcast_a_version_1_event(mapper: Mapper[Any]) -> None:
    *_, notification = notifications(mapper)
    for event in (mapper.to_domain_event(notification), ProjectionDecoder(mapper).decode(notification)):
        assert isinstance(event, Gadget.Assigned)
        assert (str(event.member_id), event.note) == (str(MEMBER), "")
        assert "member" not in vars(event)
