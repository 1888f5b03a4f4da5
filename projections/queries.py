"""Reads over the active generation of each projection.

Every read resolves the active tables inside its own transaction (share-locked
on PostgreSQL), so a rebuild can switch generations without a reader ever
meeting a missing or half-built table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from projections import tracking
from projections.catalog import PROJECTIONS
from projections.sql import Cursor, ReadDatabase


@dataclass(frozen=True)
class AuditEntry:
    position: int
    organization_id: str
    event_type: str
    occurred_at: datetime
    actor_id: str
    actor_email: str
    target_type: str
    target_id: str
    target_label: str
    details: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "organizationId": self.organization_id,
            "type": self.event_type,
            "occurredAt": self.occurred_at.isoformat(),
            "actor": {"userId": self.actor_id, "email": self.actor_email},
            "target": {"type": self.target_type, "id": self.target_id, "label": self.target_label},
            "details": self.details,
        }


class Tables:
    """An open read transaction and the names of the active tables in it."""

    def __init__(self, db: ReadDatabase, cursor: Cursor, generations: dict[str, int]) -> None:
        self.db = db
        self.cursor = cursor
        self._names: dict[str, str] = {}
        for name, generation in generations.items():
            self._names.update(PROJECTIONS[name](generation).table_names)

    def fetch(self, statement: str, *params: Any) -> list[Any]:
        self.cursor.execute(self.db.sql(statement.format(**self._names)), params)
        return self.cursor.fetchall()


@contextmanager
def read(db: ReadDatabase) -> Iterator[Tables]:
    with db.snapshot() as cursor:
        yield Tables(db, cursor, tracking.active_generations(db, cursor))


def audit_page(
    db: ReadDatabase,
    organization_id: UUID,
    after: int = 0,
    limit: int = 1000,
    since: datetime | None = None,
    until: datetime | None = None,
    event_type: str | None = None,
    actor: str | None = None,
) -> list[AuditEntry]:
    """Audit entries after position `after`, oldest first, with optional filters."""
    where, params = ["organization_id = %s", "position > %s"], [str(organization_id), after]
    if since is not None:
        where.append("occurred_at >= %s")
        params.append(db.to_db_time(since))
    if until is not None:
        where.append("occurred_at < %s")
        params.append(db.to_db_time(until))
    if event_type:
        where.append("event_type = %s")
        params.append(event_type)
    if actor:
        where.append("(actor_id = %s OR actor_email = %s)")
        params.extend([actor, actor.lower()])
    with read(db) as tables:
        rows = tables.fetch(
            "SELECT position, organization_id, event_type, occurred_at, actor_id, actor_email, target_type,"
            f" target_id, target_label, details FROM {{audit_log}} WHERE {' AND '.join(where)}"
            " ORDER BY position LIMIT %s",
            *params,
            limit,
        )
    return [
        AuditEntry(int(r[0]), r[1], r[2], db.from_db_time(r[3]), r[4], r[5], r[6], r[7], r[8], json.loads(r[9]))  # type: ignore[arg-type]
        for r in rows
    ]


def iter_audit(db: ReadDatabase, organization_id: UUID, page_size: int = 1000, **filters: Any) -> Iterator[AuditEntry]:
    """Every matching entry, fetched a page at a time (constant memory, for exports)."""
    after = 0
    while page := audit_page(db, organization_id, after=after, limit=page_size, **filters):
        yield from page
        after = page[-1].position
