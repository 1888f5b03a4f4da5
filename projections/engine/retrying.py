"""When a batch fails: find the event, retry it, park it; and the operator's retry and skip.

A batch is applied in one transaction. When that fails for a reason that is
neither an outage nor a broken read model (see `projections.engine.outages`), the
batch is applied again one event per transaction; an event that still fails
after `ATTEMPTS` tries parks its aggregate (see `projections.engine.parking`), and
the rest of the batch goes on. The live runner, the rebuild and the parallel
fill all go through `apply_or_park`, each with its own `Target` (where the
position lives).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from membership import Organization, Organizations
from projections.engine import parking, tracking
from projections.engine.base import Projection, apply_batch
from projections.engine.catalog import PROJECTIONS
from projections.engine.decoding import ProjectionDecoder, UndecodableEvent
from projections.engine.eventlog import read_aggregate
from projections.engine.outages import is_systemic, is_transient
from projections.engine.sql import Cursor, ReadDatabase

log = logging.getLogger(__name__)
ATTEMPTS = 3
ORGANIZATION_TOPICS = "membership:Organization."
SKIPS_PER_READ = 1000
Batch = Sequence[tuple[int, Any]]


@dataclass(frozen=True)
class Target:
    """Where a projection's position lives: a generation, or one share of one being filled."""

    name: str
    generation: int
    lock: Callable[[Cursor], int | None]  # the position, locked until the transaction ends (None: not now)
    advance: Callable[[Cursor, int], None]


def generation_target(db: ReadDatabase, name: str, generation: int, state: str) -> Target:
    def lock(cursor: Cursor) -> int | None:
        row = tracking.lock_generation(db, cursor, name, state)
        return None if row is None or row.generation != generation else row.position

    return Target(name, generation, lock, lambda cursor, position: tracking.set_position(
        db, cursor, name, generation, position
    ))  # fmt: skip


def is_item_failure(error: BaseException) -> bool:
    """An error of the events at hand (bad data, a bug they meet), not an outage or a broken read model."""
    return not is_transient(error) and not is_systemic(error)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def event_type(event: Any) -> str:
    return event.topic.rpartition(".")[2] if isinstance(event, UndecodableEvent) else type(event).__name__


def organization_of(event: Any, organizations: Organizations) -> str | None:
    """The organization an event belongs to: itself, or (bulk jobs) the one its job works on."""
    topic = event.topic if isinstance(event, UndecodableEvent) else getattr(type(event), "TOPIC", "")
    if topic.startswith(ORGANIZATION_TOPICS):
        return str(event.originator_id)
    organization_id = getattr(event, "organization_id", None)
    if organization_id is None:
        try:
            organization_id = getattr(organizations.repository.get(event.originator_id), "organization_id", None)
        except Exception:  # noqa: BLE001 -- only a label for the operator; the parking itself must not fail
            log.warning("cannot tell the organization of aggregate %s", event.originator_id)
    return None if organization_id is None else str(organization_id)


def apply_or_park(
    db: ReadDatabase, organizations: Organizations, projection: Projection, target: Target, batch: Batch, last: int
) -> None:
    """Apply the batch to one projection one event per transaction, parking what keeps failing.

    Outages and a broken read model are raised (the caller waits and tries again later).
    """
    if not batch:  # nothing of this projection's in it: only the position moves
        with db.transaction() as cursor:
            after = target.lock(cursor)
            if after is not None and after < last:
                target.advance(cursor, last)
    for index, (position, event) in enumerate(batch):
        upto = batch[index + 1][0] - 1 if index + 1 < len(batch) else last
        error: BaseException | None = None
        for _ in range(ATTEMPTS):
            try:
                with db.transaction() as cursor:
                    after = target.lock(cursor)
                    if after is not None and after < upto:
                        held = parking.held(db, cursor, target.name, target.generation)
                        apply_batch(db, cursor, projection, [(position, event)], after, held)
                        target.advance(cursor, upto)
                error = None
                break
            except Exception as failure:
                projection.forget_uncommitted()
                if not is_item_failure(failure):
                    raise
                error = failure
        if error is not None:
            _park(db, organizations, target, position, event, upto, error)


def _park(
    db: ReadDatabase,
    organizations: Organizations,
    target: Target,
    position: int,
    event: Any,
    upto: int,
    error: BaseException,
) -> None:
    organization_id = organization_of(event, organizations)
    with db.transaction() as cursor:
        after = target.lock(cursor)
        if after is None or after >= upto:
            return
        parking.park(
            db, cursor, target.name, target.generation, str(event.originator_id), organization_id, position,
            event_type(event), describe(error), ATTEMPTS,
        )  # fmt: skip
        target.advance(cursor, upto)
    log.error(
        "projection %r parked %s at position %s (organization %s): %s; its later events wait too."
        " After a fix: membership projections retry",
        target.name, event_type(event), position, organization_id, describe(error), exc_info=error,
    )  # fmt: skip


# -- operators -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryOutcome:
    parked: parking.ParkedEvent
    applied: int  # events applied
    still_failing: str | None = None  # the error, when an event still fails (it stays parked)


def retry(
    db: ReadDatabase, organizations: Organizations, parked: parking.ParkedEvent, skip_position: int | None = None
) -> RetryOutcome:
    """Apply the aggregate's waiting events (skipping `skip_position`) and release it if they all apply.

    Runs under the generation's lock, so the runner cannot move past the aggregate meanwhile.
    Each event is applied in a savepoint: one that fails leaves the aggregate parked at it.
    """
    projection = PROJECTIONS[parked.name](parked.generation)
    decoder = ProjectionDecoder(organizations.mapper)
    applied = 0
    with db.transaction() as cursor:
        generation = _lock_generation(db, cursor, parked)
        current = parking.lock(db, cursor, parked.name, parked.generation, parked.aggregate_id)
        if generation is None or current is None:
            return RetryOutcome(parked, 0)  # released meanwhile, or its generation was dropped
        waiting = read_aggregate(organizations, UUID(current.aggregate_id), current.position - 1, generation.position)
        for position, event in decoder.batch(waiting):
            if position == skip_position:
                continue
            cursor.execute("SAVEPOINT retry_event")
            try:
                apply_batch(db, cursor, projection, [(position, event)], position - 1)
            except Exception as error:
                cursor.execute("ROLLBACK TO SAVEPOINT retry_event")
                projection.forget_uncommitted()
                if not is_item_failure(error):
                    raise
                parking.still_failing(db, cursor, current, position, event_type(event), describe(error))
                return RetryOutcome(current, applied, describe(error))
            cursor.execute("RELEASE SAVEPOINT retry_event")
            applied += 1
        parking.release(db, cursor, current)
    log.info("projection %r: %s released after %d events", parked.name, parked.aggregate_id, applied)
    return RetryOutcome(current, applied)


def skip(
    db: ReadDatabase, organizations: Organizations, parked: parking.ParkedEvent, operator: str, reason: str
) -> RetryOutcome:
    """Give up on the parked event for good: record that in the organization's audit trail, then retry the rest."""
    if parked.organization_id is not None:
        organizations.record_skipped_event(
            UUID(parked.organization_id), operator, parked.name, parked.position, parked.event_type, reason
        )
    return retry(db, organizations, parked, skip_position=parked.position)


def _lock_generation(db: ReadDatabase, cursor: Cursor, parked: parking.ParkedEvent) -> tracking.Generation | None:
    """The parked event's generation, locked (the runner or rebuild filling it waits), or None if gone."""
    for generation in tracking.all_generations(db, cursor):
        if (generation.name, generation.generation) == (parked.name, parked.generation):
            locked = tracking.lock_generation(db, cursor, parked.name, generation.state)
            return locked if locked is not None and locked.generation == parked.generation else None
    return None


def skipped_positions(organizations: Organizations, names: Sequence[str]) -> dict[str, frozenset[int]]:
    """The events operators had each projection skip (EventSkipped in the log): a rebuild skips them again."""
    topic = get_topic(Organization.EventSkipped)
    decoder = ProjectionDecoder(organizations.mapper)
    skipped: dict[str, set[int]] = {name: set() for name in names}
    after = 0
    while notifications := organizations.recorder.select_notifications(after + 1, SKIPS_PER_READ, topics=[topic]):
        for _, event in decoder.batch(notifications):
            if event.projection in skipped:
                skipped[event.projection].add(event.position)
        after = notifications[-1].id
    return {name: frozenset(positions) for name, positions in skipped.items()}


def without(batch: Batch, positions: frozenset[int]) -> Batch:
    return [(position, event) for position, event in batch if position not in positions] if positions else batch
