"""Takes organization snapshots in the worker, off the request path.

A snapshot of a 100,000-member organization costs seconds to encode and
store; taken inside a command it would stall that command and, through the
interpreter lock, every other request of the process. Here it runs beside the
projections: whenever an organization reaches a multiple of the interval,
its state at that version is loaded (latest snapshot + the events after it)
and stored. Several workers may race: the store keeps one snapshot per version.

The loop only finds what is due; `take` does the loading and encoding. The
served processes hand that to a child process (service.snapshot_process), since
even off the request path a snapshot taken in a thread holds the interpreter
lock the projection runner needs, and every command waits for the runner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from membership import Organizations
from membership.application import project_organization
from projections.engine.background import BackgroundLoop
from projections.engine.sql import ReadDatabase
from workers import cursors

log = logging.getLogger(__name__)
ORGANIZATION_TOPIC_PREFIX = "membership:Organization."
PAGE, PAGES_PER_ROUND = 1000, 100
KEEP = 2  # snapshots kept per organization: the latest is loaded, the one before it covers a race with it


class SnapshotTaker(BackgroundLoop):
    name = "snapshots"
    poll_interval_s = 1.0
    wakes_on_save = False  # a snapshot a second later costs nothing; a round per save costs every command

    def __init__(
        self,
        organizations: Organizations,
        db: ReadDatabase,
        interval: int,
        take: Callable[[object, int], bool] | None = None,
    ) -> None:
        super().__init__(organizations)
        self.organizations, self.db, self.interval = organizations, db, interval
        self.take = take or (lambda organization_id, version: take_snapshot(organizations, organization_id, version))

    def run_once(self) -> int:
        """Snapshot every organization that crossed the interval since last time, at the latest multiple
        it reached (one written before it would never be loaded); returns how many were taken."""
        with self.db.snapshot() as cursor:
            start = cursors.position(self.db, cursor, self.name)
        due: dict[object, int] = {}
        end = start
        for _ in range(PAGES_PER_ROUND):  # looks ahead: a backlog (a restart, an import) costs one snapshot each
            notifications = self.organizations.recorder.select_notifications(start=end + 1, limit=PAGE)
            for n in notifications:
                if n.topic.startswith(ORGANIZATION_TOPIC_PREFIX) and n.originator_version % self.interval == 0:
                    due[n.originator_id] = max(due.get(n.originator_id, 0), n.originator_version)
            if notifications:
                end = notifications[-1].id
            if len(notifications) < PAGE:
                break
        if end == start:
            return 0
        for organization_id, version in sorted(due.items(), key=lambda item: item[1]):
            if self.take(organization_id, version):
                log.info("snapshot of organization %s at version %s", organization_id, version)
            self.prune(organization_id, version)
        with self.db.transaction() as cursor:
            cursors.advance(self.db, cursor, self.name, end)
        return len(due)


    def prune(self, organization_id: object, version: int) -> int:
        """Delete the organization's snapshots older than the KEEP latest multiples of the interval up to
        `version`: only the latest is ever loaded, and each holds the whole state (a snapshot table grew to
        13 times the events' size before). Returns how many were deleted."""
        oldest_kept = version - (KEEP - 1) * self.interval
        return delete_snapshots(self.organizations, self.db, [organization_id], below=oldest_kept)


def snapshot_table(organizations: Organizations) -> str | None:
    """The table the organizations' snapshots are stored in (None: snapshotting is off)."""
    snapshots = organizations.snapshots
    return None if snapshots is None else snapshots.recorder.events_table_name  # type: ignore[attr-defined]


def delete_snapshots(
    organizations: Organizations, db: ReadDatabase, organization_ids: Iterable[object] | None, below: int | None = None
) -> int:
    """Delete the snapshots of these organizations (None: of all), those older than version `below` if given
    (pruning), all of them otherwise (an erasure: they hold state in the clear). Returns how many."""
    table = snapshot_table(organizations)
    if table is None:
        return 0
    with db.transaction() as cursor:
        if organization_ids is None:
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608 -- the library's own table
            return cursor.rowcount or 0
        older = "" if below is None else " AND originator_version < %s"
        deleted = 0
        for organization_id in organization_ids:
            key = organization_id.hex if db.is_sqlite and isinstance(organization_id, UUID) else organization_id
            cursor.execute(db.sql(f"DELETE FROM {table} WHERE originator_id = %s{older}"),
                           (key,) if below is None else (key, below))  # fmt: skip
            deleted += cursor.rowcount or 0
        return deleted


def take_snapshot(organizations: Organizations, organization_id: object, version: int) -> bool:
    """Store the organization's snapshot at `version`; False when another worker stored it already."""
    try:
        organizations.take_snapshot(organization_id, version=version, projector_func=project_organization)  # type: ignore[arg-type]
    except IntegrityError:
        return False
    return True
