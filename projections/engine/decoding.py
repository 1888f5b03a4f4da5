"""Decoding stored events for the projections, lighter than the application's mapper.

Projections write ids as text, so the UUIDs inside an event's state are decoded
straight to their canonical text (`"0f1e...-..."`) instead of `UUID` objects
that every handler would turn back into text. Everything else is decoded as
the application's mapper does it: the same event classes, the same datetimes,
the same upcasting, and any other transcoding through the application's own
transcoder. The event's `originator_id` stays a `UUID`.

These events exist only inside the projections: their `UUID`-typed fields
other than `originator_id` hold `str`, so handlers write `str(e.member_id)`,
which works for both. The live runner and the rebuild use this same decoder,
so a rebuild produces exactly what the live runner produced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Mapper, Notification
from eventsourcing.utils import resolve_topic

from membership import Organization
from membership.events import missing_fields
from membership.personal_data import PersonalKeys, forget_if_erased, plain_state


@dataclass(frozen=True)
class UndecodableEvent:
    """A stored event that could not be decoded (an unknown topic, a broken upcaster, bad bytes)."""

    notification: Notification
    error: Exception

    @property
    def originator_id(self) -> Any:
        return self.notification.originator_id

    @property
    def topic(self) -> str:
        return self.notification.topic


class MissingFieldsError(Exception):
    """A stored event lacks fields its class now requires (one added without a default or an upcaster)."""


def checked(event: Any) -> Any:
    """`event`, unless it lacks a required field: then it cannot be applied as declared, and is parked with
    this error naming the fields, rather than failing inside some handler with an AttributeError."""
    missing = missing_fields(event) if isinstance(event, Organization.Event) else []
    if missing:
        raise MissingFieldsError(f"{type(event).__name__} lacks {', '.join(missing)}: add a default or an upcaster")
    return event


class ProjectionDecoder:
    """`decode(notification)` -> the domain event, ids as text (see the module docstring)."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        self._mapper = mapper
        transcoder = mapper.transcoder
        # Another transcoder: decode exactly as the application does. A cipher or a compressor only changes the
        # bytes: they are decrypted and decompressed first (plain_state), then decoded the lean way.
        self._lean = isinstance(transcoder, JSONTranscoder)
        self._fallback = transcoder._decode_obj if isinstance(transcoder, JSONTranscoder) else None  # noqa: SLF001
        self._json = json.JSONDecoder(object_hook=self._decode_object)
        self._keys: PersonalKeys | None = getattr(mapper, "keys", None)  # sealed personal data, opened directly
        self._classes: dict[str, type] = {}

    def batch(self, notifications: Sequence[Notification]) -> list[tuple[int, Any]]:
        """(position, event) for each notification, in order; an event that cannot be decoded
        becomes an `UndecodableEvent`, which every projection fails on (and so parks) alone.
        Each is decrypted and decompressed once, and the keys of the people the batch names are unwrapped
        first, in one query."""
        plains: list[bytes | Exception] = []
        for notification in notifications:
            try:
                plains.append(plain_state(self._mapper, notification))
            except Exception as error:  # noqa: BLE001 -- it belongs to this event only
                plains.append(error)
        if self._keys is not None:
            self._keys.prefetch(raw for raw in plains if isinstance(raw, bytes))
        batch: list[tuple[int, Any]] = []
        for notification, raw in zip(notifications, plains, strict=True):
            try:
                if isinstance(raw, Exception):
                    raise raw
                event = self._event(notification, raw) if self._lean else self.decode(notification)
                batch.append((notification.id, event))
            except Exception as error:  # noqa: BLE001 -- whatever it is, it belongs to this event only
                batch.append((notification.id, UndecodableEvent(notification, error)))
        return batch

    def decode(self, notification: Notification) -> Any:
        if not self._lean:
            return checked(self._mapper.to_domain_event(notification))
        return self._event(notification, plain_state(self._mapper, notification))

    def _event(self, notification: Notification, raw: bytes) -> Any:
        event = self._decode(notification, raw)
        forget_if_erased(self._keys, event)
        return event

    def _decode(self, notification: Notification, raw: bytes) -> Any:
        cls = self._classes.get(notification.topic)
        if cls is None:
            cls = self._classes[notification.topic] = resolve_topic(notification.topic)
        state: dict[str, Any] = self._json.decode(raw.decode("utf-8"))
        state["originator_id"] = notification.originator_id
        state["originator_version"] = notification.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return checked(event)

    def _decode_object(self, d: dict[str, Any]) -> Any:
        kind = d.get("_type_") if len(d) == 2 else None
        if kind == "uuid_hex":
            h = d["_data_"]
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if kind == "datetime_iso":
            return datetime.fromisoformat(d["_data_"])
        if kind == "personal" and self._keys is not None:
            return self._keys.open(d["_data_"])
        if kind is None or self._fallback is None:
            return d
        return self._fallback(d)
