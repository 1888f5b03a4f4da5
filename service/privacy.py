"""Erasing a person (GDPR Art. 17): `membership privacy erase` and the operators' API.

The events stay; the person's key goes (crypto-shredding, see membership.personal_data). In order:

1. Find the person's keys (by address, or every address used under a user id) and where each was used.
   Refuse, changing nothing, while they are the Owner of an organization (ownership must move first).
2. Record `PersonErased` in each of those organizations (they stop being a member, their pending
   invitations are cancelled; every process caching the organization applies it too).
3. Purge the copies outside the events while the key still opens them: the mailer's delivery rows, kept
   idempotent answers, the outbox's `.eml` files.
4. Delete the keys, recording the erasure by pseudonym, when, by whom and where (unfinished).
5. Finish (`finish_erasures`): delete the organizations' snapshots, rebuild every read model from the
   events, which now read the placeholder, compact the files; then purge the copies once more.

An erased person invited again is a new person: a new key, a new pseudonym.
"""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from api import idempotency_keys
from membership import Organization
from membership import exceptions as err
from membership.personal_data import PersonKey, erased_address
from projections.engine.catalog import PROJECTIONS
from projections.engine.rebuild import Rebuild
from workers.snapshots import delete_snapshots, snapshot_table

if TYPE_CHECKING:  # the composition root builds them and calls erase (Services.erase_person)
    from service.bootstrap import Services

OUTBOX = "outbox"
ORGANIZATION_CREATED = get_topic(Organization.Created)


@dataclass
class Erasure:
    """What an erasure did, without any personal data."""

    pseudonyms: list[str]
    organizations: list[str] = field(default_factory=list)
    snapshots_deleted: int = 0
    mail_rows_scrubbed: int = 0
    responses_deleted: int = 0
    outbox_files_deleted: int = 0
    rebuilt: dict[str, int] = field(default_factory=dict)


def erase(services: Services, operator: str, email_address: str | None = None, user_id: str | None = None) -> Erasure:
    """Erase the person at `email_address`, or every address used under `user_id` (see the module docstring).
    One erasure at a time (`ErasureInProgressError` otherwise): each rebuilds every read model."""
    with services.read_db.exclusive("erasure") as mine:
        if not mine:
            raise err.ErasureInProgressError("Another erasure is running; try again when it has finished.")
        return _erase(services, operator, email_address, user_id)


def _erase(services: Services, operator: str, email_address: str | None, user_id: str | None) -> Erasure:
    keys_store = services.organizations.personal_keys
    assert keys_store is not None, "the service always seals personal data"
    if email_address is None and not user_id:
        raise err.InvalidValueError("Give an e-mail address or a user id.", "userId")
    keys = keys_store.find(email=email_address, user_id=user_id)
    if not keys:
        raise err.PersonNotFoundError("Nobody with that e-mail address or user id has data here.")
    erasure = Erasure(pseudonyms=[key.pseudonym for key in keys])
    names: dict[str, set[str]] = {}
    done: set[tuple[str, UUID]] = set()
    while places := [(k, o) for k, o in _organizations_of(services, keys) if (k.pseudonym, o) not in done]:
        # Again until none is new: a command may have used a key in another organization meanwhile.
        for pseudonym, found in _names_and_check_erasable(services, places).items():  # an Owner: refused here
            names.setdefault(pseudonym, set()).update(found)
        for key, organization_id in places:
            services.organizations.erase_person(organization_id, operator, key.pseudonym, key.address, key.user_ids)
            erasure.organizations.append(str(organization_id))
            done.add((key.pseudonym, organization_id))
        keys = [keys_store.find_key(key.pseudonym) or key for key in keys]  # their uses, read again
    texts = {key.pseudonym: [key.address, *names.get(key.pseudonym, ())] for key in keys}
    _purge_copies(services, keys, texts, erasure)  # while the key still opens them
    keys_store.delete(keys, erased_by=f"operator:{operator}", organizations=sorted({o for _, o in done}, key=str))
    finish_erasures(services, erasure)
    _purge_copies(services, keys, texts, erasure)  # a worker behind may have copied some meanwhile
    return erasure


def finish_erasures(services: Services, erasure: Erasure | None = None) -> list[str]:
    """What an erasure does once the key is gone, for every erasure not finished yet (also one stopped by a
    failure: `membership privacy erase --finish` runs this alone): delete the organizations' snapshots (taken
    before, in the clear), rebuild every read model from the events, which now read the placeholder, drop the
    old tables and compact the files. Returns the pseudonyms finished."""
    keys_store = services.organizations.personal_keys
    assert keys_store is not None
    unfinished = keys_store.unfinished_erasures()
    if not unfinished:
        return []
    organization_ids = sorted({UUID(o) for _, organizations in unfinished for o in organizations}, key=str)
    deleted = delete_snapshots(services.organizations, services.read_db, organization_ids)
    rebuilt = Rebuild(
        services.organizations, services.read_db, list(PROJECTIONS), database=services.settings.database
    ).run(restart=True)  # never a generation begun before: it may hold rows decoded while the key existed
    deleted += delete_snapshots(services.organizations, services.read_db, organization_ids)  # one a worker took before
    _compact(services)
    keys_store.finish_erasures([pseudonym for pseudonym, _ in unfinished])
    if erasure is not None:
        erasure.snapshots_deleted, erasure.rebuilt = deleted, rebuilt
    return [pseudonym for pseudonym, _ in unfinished]


def _purge_copies(services: Services, keys: list[PersonKey], texts: dict[str, list[str]], erasure: Erasure) -> None:
    """Copies of the person's data outside the events and read models: the mailer's rows, kept answers to
    idempotent requests, the outbox's files."""
    for key in keys:
        erasure.mail_rows_scrubbed += _scrub_mail_rows(services, key)
        erasure.responses_deleted += _delete_responses(services, texts[key.pseudonym])
        outbox = services.settings.database.var_dir / OUTBOX
        erasure.outbox_files_deleted += _delete_outbox_files(outbox, texts[key.pseudonym])


def _compact(services: Services) -> None:
    """What was deleted or overwritten must not linger in the files: the key above all (crypto-shredding),
    then the snapshots, mail rows and kept answers (the old read-model tables were dropped)."""
    tables = ["personal_keys", "personal_key_uses", "mail_deliveries", idempotency_keys.TABLE]
    services.read_db.compact([*tables, *_snapshot_tables(services)])


def _organizations_of(services: Services, keys: list[PersonKey]) -> list[tuple[PersonKey, UUID]]:
    """(key, organization) for each organization whose events hold the key's data (bulk jobs hold only the
    requester's address: their events are read through the placeholder like the rest)."""
    places = []
    for key in keys:
        for aggregate_id in sorted(key.organizations):
            first = services.organizations.recorder.select_events(UUID(aggregate_id), limit=1)
            # none: its events were never saved (a command failed after sealing)
            if first and first[0].topic == ORGANIZATION_CREATED:
                places.append((key, UUID(aggregate_id)))
    return places


def _names_and_check_erasable(services: Services, places: list[tuple[PersonKey, UUID]]) -> dict[str, set[str]]:
    """The names the person goes by (to purge them from files too), by pseudonym; an Owner is refused here."""
    names: dict[str, set[str]] = {}
    for key, organization_id in places:
        with services.organizations.reading(organization_id) as org:
            member = org.check_erasable(key.address, key.user_ids)
        if member is not None:
            names.setdefault(key.pseudonym, set()).add(member.name)
    return names


def _scrub_mail_rows(services: Services, key: PersonKey) -> int:
    """The mailer's deliveries are operational state, never rebuilt: the address becomes the placeholder in
    place (and an unsent one is not sent: its invitation was cancelled)."""
    db = services.read_db
    placeholder = erased_address(key.pseudonym)
    with db.transaction() as cursor:
        cursor.execute(
            db.sql(
                "UPDATE mail_deliveries SET recipient = %s, last_error = REPLACE(last_error, %s, %s),"
                " status = CASE WHEN status IN ('queued', 'sending') THEN 'skipped' ELSE status END"
                " WHERE recipient = %s"
            ),
            (placeholder, key.address, placeholder, key.address),
        )
        scrubbed = cursor.rowcount or 0
        cursor.execute(
            db.sql("UPDATE mail_deliveries SET inviter_email = %s WHERE inviter_email = %s"), (placeholder, key.address)
        )
        return scrubbed + (cursor.rowcount or 0)


def _delete_responses(services: Services, texts: list[str]) -> int:
    """Kept answers to idempotent requests that name the person (a retry of one then runs afresh)."""
    return idempotency_keys.delete_naming(services.read_db, services.settings.secret_key, texts)


def _delete_outbox_files(outbox: Path, texts: list[str]) -> int:
    """Messages written to the outbox (the development transport) to or naming the person."""
    if not outbox.is_dir():
        return 0
    deleted = 0
    for path in outbox.glob("*.eml"):
        if any(text in _readable(path) for text in texts):
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted


def _readable(path: Path) -> str:
    """The message as a person reads it: headers decoded (RFC 2047) and every text part decoded."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    parts = [str(value) for value in message.values()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_content())
    return "\n".join(parts)


# -- events stored before personal data was sealed ------------------------------------------------------------
@dataclass
class Sealing:
    """What `seal_stored_events` did."""

    events: int = 0  # read
    sealed: int = 0  # rewritten with their personal fields sealed
    changed_meanwhile: int = 0  # left as they were: another process rewrote them first (run it again)
    snapshots_deleted: int = 0


def seal_stored_events(services: Services, batch_size: int = 1000) -> Sealing:
    """The one-off migration of a store written before personal data was sealed: each stored event whose
    personal fields are plain text is decoded, encoded again (sealing them, making the people's keys) and
    checked to decode to the very same event; then, per batch and in one transaction, the stored row is
    swapped for the sealed one, provided it is still the row that was read. Events are read in order and each
    batch commits alone, so a stopped run is simply run again. Snapshots (state in the clear) are deleted;
    the worker takes new ones. Finally the files are compacted, so the plaintext does not linger in them."""
    app, db = services.organizations, services.read_db
    table = app.recorder.events_table_name  # type: ignore[attr-defined]
    position = "rowid" if db.is_sqlite else "notification_id"
    report, after = Sealing(), 0
    while True:
        with db.snapshot() as cursor:
            cursor.execute(
                db.sql(f"SELECT {position}, originator_id, originator_version, topic, state FROM {table}"
                       f" WHERE {position} > %s ORDER BY {position} LIMIT %s"),
                (after, batch_size),
            )  # fmt: skip
            rows = cursor.fetchall()
        if not rows:
            break
        after = rows[-1][0]
        report.events += len(rows)
        swaps = [swap for row in rows if (swap := _sealed(app, row)) is not None]
        with db.transaction() as cursor:
            for key, old, new in swaps:
                cursor.execute(db.sql(f"UPDATE {table} SET state = %s WHERE {position} = %s AND state = %s"),
                               (new, key, old))  # fmt: skip
                if cursor.rowcount == 1:
                    report.sealed += 1
                else:
                    report.changed_meanwhile += 1
    report.snapshots_deleted = delete_snapshots(services.organizations, services.read_db, None)
    services.read_db.compact([table, *_snapshot_tables(services)])
    return report


def _sealed(app: Any, row: tuple[Any, ...]) -> tuple[Any, bytes, bytes] | None:
    """(position, old state, new state) for a row whose personal fields are plain text, else None."""
    key, originator_id, version, topic, state = row
    state = bytes(state)
    stored = StoredEvent(_uuid(originator_id), version, topic, state)
    event = app.mapper.to_domain_event(stored)
    fields = getattr(type(event), "PERSONAL_DATA", None)
    if not fields or not _has_plain_text(app, state, fields):
        return None
    new = app.mapper.to_stored_event(event).state
    again = app.mapper.to_domain_event(StoredEvent(stored.originator_id, version, topic, new))
    if vars(again) != vars(event):
        raise RuntimeError(f"event {version} of {originator_id} does not decode the same once sealed: nothing of it was changed")
    return key, state, new


def _has_plain_text(app: Any, state: bytes, fields: dict[str, Any]) -> bool:
    raw = state
    if app.mapper.cipher:
        raw = app.mapper.cipher.decrypt(raw)
    if app.mapper.compressor:
        raw = app.mapper.compressor.decompress(raw)
    values = json.loads(raw)
    return any(isinstance(values.get(field), str) and values[field] for field in fields)


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _snapshot_tables(services: Services) -> list[str]:
    table = snapshot_table(services.organizations)
    return [] if table is None else [table]
