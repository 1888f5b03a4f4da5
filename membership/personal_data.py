"""Personal data in events, sealed with a key of its person's own: delete the key and it is gone.

Events are forever, yet a person may ask to be forgotten (GDPR Art. 17). So each field an event class
declares personal (`PERSONAL_DATA` in `membership.events`: an e-mail address, a name) is stored sealed
(AES-GCM) with a key belonging to the person whose address it is. The keys live in the `personal_keys`
table, each wrapped by the master key (MEMBERSHIP_DATA_KEY); `PersonalKeys.delete` is crypto-shredding:
from then on every field sealed with that key decodes to a stable placeholder naming the key's id, the
person's pseudonym (`erased-7f3a9c1e@erased.invalid`, `erased member 7f3a9c1e`). Nothing else changes:
the events keep their topics, versions and every other field, so organizations still replay.

A person is an e-mail address. The table finds a person's key by a keyed hash of the address (HMAC with a
secret of its own, wrapped like the keys), never by the plaintext; it also records in which organizations and
under which user ids each key was used, so an erasure knows where to go (`service.privacy`).

Sealed values are a transcoding of the application's JSON transcoder (`{"_type_": "personal", "_data_":
"e<key id>:<base64>"}`), so everything that decodes events with that transcoder (the application, the
projections' lean decoder) opens them alike. Snapshots are not sealed: they are a cache, deleted when a
person in them is erased.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
import threading
import unicodedata
from base64 import b64decode, b64encode
from binascii import a2b_base64
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.cryptography import AESGCM, AESCipher  # AESGCM: the `cryptography` package's, as the library uses it
from eventsourcing.persistence import EventStore, Mapper, StoredEvent, Transcoding
from eventsourcing.utils import get_topic

ADDRESS, TEXT = "e", "n"  # what a sealed value is: its placeholder must look like one
KEYS_PER_QUERY = 500
# Unwrapped keys a process keeps; past that it forgets the oldest half (read again when needed). Each holds an
# OpenSSL context of ~2.6 KiB: 110,000 of them made a server process 290 MiB larger.
CIPHERS_KEPT = 10_000
# Where a sealed value names its key in an event's stored JSON (the library's transcoder writes it compactly):
# `PersonalKeys.prefetch` finds the keys a batch of events needs before decoding any of them.
SEALED_KEY_ID = re.compile(rb'"_type_":"personal","_data_":"[' + ADDRESS.encode() + TEXT.encode() + rb"]([0-9a-f]+):")


def erased_address(pseudonym: str) -> str:
    """What an erased person's e-mail address reads as: stable, unique per key, and still an address."""
    return f"erased-{pseudonym[:8]}@erased.invalid"


def erased_name(pseudonym: str) -> str:
    """What an erased person's name (or any other personal text) reads as."""
    return f"erased member {pseudonym[:8]}"


class DataKeyError(Exception):
    """The master keys configured cannot open the stored keys (a wrong or missing MEMBERSHIP_DATA_KEY)."""


class _Cipher(AESCipher):
    """The library's AES-GCM cipher (its layout: nonce, tag, ciphertext), made from raw key bytes rather than
    its environment, and keeping its AESGCM object: making one per value was half the cost of opening it."""

    def __init__(self, key: bytes) -> None:  # not super().__init__: it reads the key from an environment
        AESCipher.check_key_size(len(key))
        self.key = key
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext, None)
        return nonce + sealed[-16:] + sealed[:-16]

    def decrypt(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) < 28:
            raise ValueError("Damaged cipher text: too short")
        return self._aead.decrypt(ciphertext[:12], ciphertext[28:] + ciphertext[12:28], None)


class MasterKeys:
    """The current master key, which wraps new keys, and retired ones that still unwrap old ones (rotation)."""

    CODEC = ("DATA_KEY", "DATA_KEYS_RETIRED")  # as `as_codec` names them

    def __init__(self, current: bytes, retired: Sequence[bytes] = ()) -> None:
        self._ciphers = {_master_id(key): _Cipher(key) for key in (*retired, current)}
        self.current_id = _master_id(current)
        self._keys = (current, tuple(retired))

    def as_codec(self) -> dict[str, str]:
        """The keys as text, for a child process that decodes events (sent on its stdin, never its arguments)."""
        current, retired = self._keys
        return {
            "DATA_KEY": b64encode(current).decode(),
            "DATA_KEYS_RETIRED": " ".join(b64encode(k).decode() for k in retired),
        }

    @classmethod
    def from_codec(cls, codec: dict[str, str]) -> MasterKeys | None:
        if not codec.get("DATA_KEY"):
            return None
        return cls(b64decode(codec["DATA_KEY"]), [b64decode(k) for k in codec.get("DATA_KEYS_RETIRED", "").split()])

    def wrap(self, key: bytes) -> tuple[str, str]:
        return self.current_id, b64encode(self._ciphers[self.current_id].encrypt(key)).decode()

    def unwrap(self, master_id: str, wrapped: str) -> bytes:
        cipher = self._ciphers.get(master_id)
        if cipher is None:
            raise DataKeyError(
                f"a personal-data key is wrapped by master key {master_id}, which is not configured: set it as"
                " MEMBERSHIP_DATA_KEY or list it in MEMBERSHIP_DATA_KEYS_RETIRED"
            )
        return cipher.decrypt(b64decode(wrapped))


def _master_id(key: bytes) -> str:
    return hashlib.sha256(b"membership master key " + key).hexdigest()[:12]


@dataclass(frozen=True)
class Personal:
    """A personal value on its way into the store: `text`, belonging to the person at `address`."""

    text: str
    kind: str  # ADDRESS or TEXT
    address: str
    user_id: str  # the person's user id where the event names it, else ""
    organization_id: str


@dataclass(frozen=True)
class PersonKey:
    """One person's key as an erasure sees it: their pseudonym, address, and where the key was used."""

    pseudonym: str  # the key's id
    address: str
    organizations: frozenset[str]
    user_ids: frozenset[str]


class PersonalKeys:
    """The key store: a key per person, made on first use, unwrapped once per process, deleted to erase."""

    def __init__(self, masters: MasterKeys) -> None:
        self.masters = masters
        self._datastore: Any = None
        self._sqlite = False
        self._prefix = ""
        self._lock = threading.Lock()
        self._by_subject: dict[str, str] = {}  # keyed hash of an address -> key id
        self._ciphers: dict[str, _Cipher | None] = {}  # key id -> its cipher; None: erased (ids are never reused)
        self._uses: set[tuple[str, str, str]] = set()  # (key id, organization, user id) known to be recorded
        self._hash_secret = b""

    # -- the tables ----------------------------------------------------------------------------------
    def bind(self, datastore: Any) -> None:
        """Keep the keys in the event store's own database (`datastore`: the library's SQLite or PostgreSQL
        datastore), creating the tables on first use."""
        self._datastore = datastore
        self._sqlite = type(datastore).__name__.startswith("SQLite")
        self._prefix = "" if self._sqlite else f"{datastore.schema}."
        with self._transaction() as cursor:
            # Made once, by the first process: on PostgreSQL under the service's schema lock, and looked for
            # first (concurrent CREATE TABLE IF NOT EXISTS collide in its catalogs); SQLite's statements write
            # first (see _transaction) and its write lock serialises them.
            if self._sqlite or not self._has_tables(cursor):
                for statement in self._schema():
                    cursor.execute(statement)
        with self._transaction() as cursor:
            self._hash_secret = self._secret(cursor, "address-hash")

    def _has_tables(self, cursor: Any) -> bool:
        if self._sqlite:
            found = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = %s"
            return self._run(cursor, found, "personal_erasures").fetchone() is not None
        found = "SELECT to_regclass(%s) AS found"
        return _values(self._run(cursor, found, f"{self._prefix}personal_erasures").fetchone(), "found")[0] is not None

    def _schema(self) -> list[str]:
        p = self._prefix
        return [
            f"CREATE TABLE IF NOT EXISTS {p}personal_keys (key_id TEXT PRIMARY KEY, subject TEXT NOT NULL UNIQUE,"
            " master_id TEXT NOT NULL, wrapped TEXT NOT NULL, address TEXT NOT NULL, created_at TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {p}personal_key_uses (key_id TEXT NOT NULL, organization_id TEXT NOT NULL,"
            " user_id TEXT NOT NULL, PRIMARY KEY (key_id, organization_id, user_id))",
            f"CREATE INDEX IF NOT EXISTS personal_key_uses_by_user ON {p}personal_key_uses (user_id)",
            f"CREATE TABLE IF NOT EXISTS {p}personal_secrets (name TEXT PRIMARY KEY, master_id TEXT NOT NULL,"
            " wrapped TEXT NOT NULL)",
            # organizations: their ids, space-separated; finished_at: NULL until the read models are rebuilt
            f"CREATE TABLE IF NOT EXISTS {p}personal_erasures (pseudonym TEXT PRIMARY KEY, erased_at TEXT NOT NULL,"
            " erased_by TEXT NOT NULL, organizations TEXT NOT NULL, finished_at TEXT)",
        ]

    def _secret(self, cursor: Any, name: str) -> bytes:
        master_id, wrapped = self.masters.wrap(secrets.token_bytes(32))
        self._run(
            cursor,
            "INSERT INTO {p}personal_secrets (name, master_id, wrapped) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            name, master_id, wrapped,
        )  # fmt: skip
        row = self._run(cursor, "SELECT master_id, wrapped FROM {p}personal_secrets WHERE name = %s", name).fetchone()
        return self.masters.unwrap(*_values(row, "master_id", "wrapped"))

    @contextmanager
    def _transaction(self, durable: bool = True, write: bool = True) -> Iterator[Any]:
        """A transaction on the event store's database. One that writes must write first: SQLite's deferred
        transactions cannot turn a read into a write once another connection has written (SQLITE_BUSY)."""
        if self._datastore is None:
            raise DataKeyError("the personal-data key store is not bound to a database")
        with self._datastore.transaction(commit=write) as cursor:
            if not durable and not self._sqlite:
                # A new key is only ever needed by the event saved right after it, whose commit flushes the
                # log up to and including this one: not waiting for this flush costs no durability.
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            yield cursor

    def _run(self, cursor: Any, statement: str, *params: Any) -> Any:
        cursor.execute(self._dialect(statement), params)
        return cursor

    def _run_many(self, cursor: Any, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        cursor.executemany(self._dialect(statement), rows)

    def _dialect(self, statement: str) -> str:
        statement = statement.replace("{p}", self._prefix)
        return statement.replace("%s", "?") if self._sqlite else statement

    # -- sealing and opening -------------------------------------------------------------------------
    def seal(self, value: Personal) -> str:
        """`value` sealed with its person's key (made on first use): "<kind><key id>:<base64>"."""
        key_id, cipher = self._key_for(value.address, value.user_id, value.organization_id)
        return f"{value.kind}{key_id}:{b64encode(cipher.encrypt(value.text.encode())).decode()}"

    def open(self, sealed: str) -> str:
        """The sealed text, or its placeholder when the person was erased."""
        key_id, _, data = sealed.partition(":")
        kind, key_id = key_id[0], key_id[1:]
        cipher = self._ciphers.get(key_id) or self.cipher(key_id)
        if cipher is None:
            return erased_address(key_id) if kind == ADDRESS else erased_name(key_id)
        return cipher.decrypt(a2b_base64(data)).decode()

    def subject(self, address: str) -> str:
        """The keyed hash a person's key is found by (the address as stored: trimmed, lower-cased, NFC)."""
        normal = unicodedata.normalize("NFC", address.strip().lower())
        return hmac.new(self._hash_secret, normal.encode(), hashlib.sha256).hexdigest()

    def _key_for(self, address: str, user_id: str, organization_id: str) -> tuple[str, _Cipher]:
        subject = self.subject(address)
        key_id = self._by_subject.get(subject)
        cipher = None if key_id is None else self._ciphers.get(key_id)
        if cipher is None or (key_id, organization_id, user_id) not in self._uses:
            key_id, cipher = self._make_keys({(subject, organization_id, user_id): address})[subject]
        assert key_id is not None and cipher is not None
        return key_id, cipher

    def prepare(self, events: Iterable[Any]) -> None:
        """Make the keys (and record the uses) the events' personal data needs that this process does not know
        yet, in one transaction: a save of many events (seeding, a bulk job) would otherwise take one per
        person. `seal` then finds them known."""
        wanted: dict[tuple[str, str, str], str] = {}  # (subject, organization, user id) -> address
        for event in events:
            state = vars(event)
            for field, (address_field, user_field) in (getattr(type(event), "PERSONAL_DATA", None) or {}).items():
                address = state.get(address_field)
                if not address or not state.get(field):
                    continue
                subject, use = (
                    self.subject(address),
                    (str(state["originator_id"]), state.get(user_field, "") if user_field else ""),
                )
                key_id = self._by_subject.get(subject)
                if key_id is None or self._ciphers.get(key_id) is None or (key_id, *use) not in self._uses:
                    wanted[(subject, *use)] = address
        if wanted:
            self._make_keys(wanted)

    def _make_keys(self, wanted: dict[tuple[str, str, str], str]) -> dict[str, tuple[str, _Cipher]]:
        """Each subject's key (made unless it exists: a conflict keeps the one made first, by any process) and
        the uses, in one transaction; returns {subject: (key id, cipher)}."""
        addresses = {subject: address for (subject, _, _), address in sorted(wanted.items())}  # a fixed lock order
        made = []
        for subject, address in addresses.items():
            key = secrets.token_bytes(32)
            master_id, wrapped = self.masters.wrap(key)
            sealed_address = b64encode(_Cipher(key).encrypt(address.encode())).decode()
            made.append(
                (secrets.token_hex(8), subject, master_id, wrapped, sealed_address, datetime.now(UTC).isoformat())
            )
        found: dict[str, tuple[str, _Cipher]] = {}
        with self._transaction(durable=False) as cursor:
            self._run_many(
                cursor,
                "INSERT INTO {p}personal_keys (key_id, subject, master_id, wrapped, address, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                made,
            )  # written first, see _transaction
            subjects = list(addresses)
            for start in range(0, len(subjects), 500):
                chunk = subjects[start : start + 500]
                marks = ", ".join(["%s"] * len(chunk))
                rows = self._run(
                    cursor, f"SELECT key_id, subject, master_id, wrapped FROM {{p}}personal_keys WHERE subject IN ({marks})",
                    *chunk,
                ).fetchall()  # fmt: skip
                for row in rows:
                    key_id, subject, master_id, wrapped = _values(row, "key_id", "subject", "master_id", "wrapped")
                    found[subject] = (key_id, _Cipher(self.masters.unwrap(master_id, wrapped)))
            uses = sorted((found[subject][0], organization, user) for subject, organization, user in wanted)
            self._run_many(
                cursor,
                "INSERT INTO {p}personal_key_uses (key_id, organization_id, user_id) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                uses,
            )  # fmt: skip
        with self._lock:
            for subject, (key_id, _) in found.items():
                self._by_subject[subject] = key_id
            self._remember({key_id: cipher for key_id, cipher in found.values()})
            self._uses.update(uses)
        return found

    def cipher(self, key_id: str) -> _Cipher | None:
        """The key's cipher, or None once it is deleted."""
        try:
            return self._ciphers[key_id]
        except KeyError:
            self._load([key_id])
            return self._ciphers.get(key_id)

    def prefetch(self, states: Iterable[bytes]) -> None:
        """Unwrap the keys that the sealed values in these stored states (plain JSON) need and this process
        does not hold, in one query per KEYS_PER_QUERY: a replay, or a batch of a projection, then asks for each
        person once, not once per event as it decodes. (A value it does not find is looked up when opened.)"""
        wanted = {match.decode() for state in states for match in SEALED_KEY_ID.findall(state)}
        missing = sorted(wanted - self._ciphers.keys())
        if missing:
            self._load(missing)

    def holds(self, key_id: str) -> bool:
        """Whether this process holds the key unwrapped (or knows it deleted): opening its values asks nothing."""
        return key_id in self._ciphers

    def _load(self, key_ids: Sequence[str]) -> None:
        found: dict[str, _Cipher | None] = dict.fromkeys(key_ids)  # None: deleted (ids are never reused)
        with self._transaction(write=False) as cursor:
            for start in range(0, len(key_ids), KEYS_PER_QUERY):
                chunk = key_ids[start : start + KEYS_PER_QUERY]
                marks = ", ".join(["%s"] * len(chunk))
                statement = f"SELECT key_id, master_id, wrapped FROM {{p}}personal_keys WHERE key_id IN ({marks})"
                for row in self._run(cursor, statement, *chunk).fetchall():
                    key_id, master_id, wrapped = _values(row, "key_id", "master_id", "wrapped")
                    found[key_id] = _Cipher(self.masters.unwrap(master_id, wrapped))
        with self._lock:
            self._remember(found)

    def _remember(self, ciphers: dict[str, _Cipher | None]) -> None:
        """Keep these (under the lock); past CIPHERS_KEPT, forget the oldest half first: a key forgotten is
        read again when needed, and an erased one is then not found, so forgetting never changes an answer."""
        if len(self._ciphers) + len(ciphers) > CIPHERS_KEPT:
            for key_id in list(itertools.islice(self._ciphers, len(self._ciphers) // 2)):
                del self._ciphers[key_id]
        self._ciphers.update(ciphers)

    # -- erasure -------------------------------------------------------------------------------------
    def find(self, email: str | None = None, user_id: str | None = None) -> list[PersonKey]:
        """The keys of the person at `email`, or of every address used under `user_id`."""
        with self._transaction(write=False) as cursor:
            if email is not None:
                rows = self._run(
                    cursor, "SELECT key_id FROM {p}personal_keys WHERE subject = %s", self.subject(email)
                ).fetchall()
            else:
                if not user_id:  # "" marks uses without a user id: it would find almost everyone
                    raise ValueError("a user id is needed")
                rows = self._run(
                    cursor, "SELECT DISTINCT key_id FROM {p}personal_key_uses WHERE user_id = %s", user_id
                ).fetchall()
            return [self._person_key(cursor, _values(row, "key_id")[0]) for row in rows]

    def _person_key(self, cursor: Any, key_id: str) -> PersonKey:
        row = self._run(
            cursor, "SELECT master_id, wrapped, address FROM {p}personal_keys WHERE key_id = %s", key_id
        ).fetchone()
        master_id, wrapped, address = _values(row, "master_id", "wrapped", "address")
        plain = _Cipher(self.masters.unwrap(master_id, wrapped)).decrypt(b64decode(address)).decode()
        uses = self._run(
            cursor, "SELECT organization_id, user_id FROM {p}personal_key_uses WHERE key_id = %s", key_id
        ).fetchall()
        pairs = [_values(use, "organization_id", "user_id") for use in uses]
        return PersonKey(
            key_id, plain, frozenset(org for org, _ in pairs), frozenset(user for _, user in pairs if user)
        )

    def find_key(self, key_id: str) -> PersonKey | None:
        """One key as `find` gives it, or None once deleted."""
        with self._transaction(write=False) as cursor:
            row = self._run(cursor, "SELECT key_id FROM {p}personal_keys WHERE key_id = %s", key_id).fetchone()
            return None if row is None else self._person_key(cursor, key_id)

    def delete(self, keys: Iterable[PersonKey], erased_by: str, organizations: Sequence[Any] = ()) -> None:
        """Crypto-shredding: the keys go, and with them every value sealed with them; the erasure is recorded
        by pseudonym, when, by whom and in which organizations, without any personal data, unfinished until
        the read models are rebuilt (`finish_erasures`)."""
        now, keys = datetime.now(UTC).isoformat(), list(keys)
        places = " ".join(str(organization) for organization in organizations)
        with self._transaction() as cursor:
            for key in keys:
                self._run(cursor, "DELETE FROM {p}personal_key_uses WHERE key_id = %s", key.pseudonym)
                self._run(cursor, "DELETE FROM {p}personal_keys WHERE key_id = %s", key.pseudonym)
                self._run(
                    cursor,
                    "INSERT INTO {p}personal_erasures (pseudonym, erased_at, erased_by, organizations)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    key.pseudonym, now, erased_by, places,
                )  # fmt: skip
        self.forget(key.pseudonym for key in keys)

    def unfinished_erasures(self) -> list[tuple[str, list[str]]]:
        """(pseudonym, organization ids) of each erasure whose key is gone but whose read models are not
        rebuilt yet."""
        with self._transaction(write=False) as cursor:
            rows = self._run(
                cursor, "SELECT pseudonym, organizations FROM {p}personal_erasures WHERE finished_at IS NULL"
            ).fetchall()
        return [
            (pseudonym, organizations.split())
            for pseudonym, organizations in (_values(r, "pseudonym", "organizations") for r in rows)
        ]

    def finish_erasures(self, pseudonyms: Sequence[str]) -> None:
        now = datetime.now(UTC).isoformat()
        with self._transaction() as cursor:
            self._run_many(
                cursor, "UPDATE {p}personal_erasures SET finished_at = %s WHERE pseudonym = %s",
                [(now, pseudonym) for pseudonym in pseudonyms],
            )  # fmt: skip

    def forget(self, key_ids: Iterable[str]) -> None:
        """Drop deleted keys from this process's memory (an erasure elsewhere: `PersonErased`). The subject and
        use entries may stay: a key known to be gone is never used again (`_key_for` makes a new one)."""
        with self._lock:
            self._remember(dict.fromkeys(key_ids))

    def erasures(self) -> list[dict[str, Any]]:
        """Every erasure recorded: pseudonym, when, by whom, in which organizations, when finished."""
        names = ("pseudonym", "erased_at", "erased_by", "organizations", "finished_at")
        with self._transaction(write=False) as cursor:
            rows = self._run(
                cursor, f"SELECT {', '.join(names)} FROM {{p}}personal_erasures ORDER BY erased_at"
            ).fetchall()
        erasures = [dict(zip(names, _values(row, *names), strict=True)) for row in rows]
        for erasure in erasures:
            erasure["organizations"] = erasure["organizations"].split()
        return erasures

    def rotate(self) -> int:
        """Re-wrap every key and secret wrapped by a retired master key with the current one; returns how many."""
        changes = []
        with self._transaction(write=False) as cursor:
            for table, column in (("personal_keys", "key_id"), ("personal_secrets", "name")):
                rows = self._run(
                    cursor, f"SELECT {column}, master_id, wrapped FROM {{p}}{table} WHERE master_id <> %s",
                    self.masters.current_id,
                ).fetchall()  # fmt: skip
                for row in rows:
                    name, master_id, wrapped = _values(row, column, "master_id", "wrapped")
                    changes.append((table, column, name, *self.masters.wrap(self.masters.unwrap(master_id, wrapped))))
        with self._transaction() as cursor:
            for table, column, name, new_id, new_wrapped in changes:
                self._run(
                    cursor, f"UPDATE {{p}}{table} SET master_id = %s, wrapped = %s WHERE {column} = %s",
                    new_id, new_wrapped, name,
                )  # fmt: skip
        return len(changes)


def _values(row: Any, *names: str) -> tuple[Any, ...]:
    """A row's values by name: psycopg gives dicts here, sqlite3 gives tuples in the order selected."""
    if isinstance(row, dict):
        return tuple(row[name] for name in names)
    return tuple(row)


class SealedTranscoding(Transcoding):
    """Personal values in the stored JSON: sealed on the way in, opened (or a placeholder) on the way out."""

    type = Personal
    name = "personal"

    def __init__(self, keys: PersonalKeys | None) -> None:
        self.keys = keys  # None: an application without the key store (tests, tools) reads only placeholders

    def encode(self, obj: Personal) -> str:
        if self.keys is None:
            raise DataKeyError("personal data cannot be sealed without the key store")
        return self.keys.seal(obj)

    def decode(self, data: str) -> str:
        if self.keys is None:
            key_id = data[1:].split(":", 1)[0]
            return erased_address(key_id) if data[0] == ADDRESS else erased_name(key_id)
        return self.keys.open(data)


class PersonalDataMapper(Mapper[UUID]):
    """The library's mapper, but an event's personal fields are handed to the transcoder as `Personal`
    values (sealed by `SealedTranscoding`), and decoding a `PersonErased` forgets the erased key."""

    keys: PersonalKeys

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        fields = getattr(type(domain_event), "PERSONAL_DATA", None)
        if not fields:
            return super().to_stored_event(domain_event)
        original = vars(domain_event)
        state = dict(original)
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        for field, (address_field, user_field) in fields.items():
            text, address = original.get(field), original.get(address_field)
            if text and address:
                kind = ADDRESS if field == address_field else TEXT
                user_id = original.get(user_field, "") if user_field else ""
                state[field] = Personal(text, kind, address, user_id, str(originator_id))
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        stored_state = self.transcoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(originator_id, originator_version, get_topic(type(domain_event)), stored_state)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        forget_if_erased(self.keys, event)
        return event


def forget_if_erased(keys: PersonalKeys | None, event: Any) -> None:
    """An erasure recorded by another process: this one drops the key too (see `PersonErased`)."""
    if keys is not None and getattr(type(event), "ERASES_KEY", False):
        keys.forget([event.pseudonym])


class PersonalEventStore(EventStore[UUID]):
    """The library's event store, but reading an aggregate's events first unwraps, in one query, the keys of
    the people they name (`PersonalKeys.prefetch`): a replay of 400 events naming 400 people made 400 queries."""

    def get(
        self, originator_id: UUID, *, gt: int | None = None, lte: int | None = None, desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[Any]:  # fmt: skip
        return iter(
            decoded(self.mapper, self.recorder.select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit))
        )


def decoded(mapper: Mapper[Any], stored: Sequence[Any]) -> list[Any]:
    """`mapper.to_domain_event` of each stored event (or notification), the keys of the people they name
    unwrapped first, in one query (`PersonalKeys.prefetch`), when the mapper seals personal data."""
    keys: PersonalKeys | None = getattr(mapper, "keys", None)
    if keys is not None and len(stored) > 1:
        keys.prefetch(plain_states(mapper, stored))
    return [mapper.to_domain_event(event) for event in stored]


def plain_states(mapper: Mapper[Any], stored: Iterable[Any]) -> Iterator[bytes]:
    """Each stored event's JSON (`plain_state`); one that fails is left out: decoding it reports the failure."""
    for event in stored:
        try:
            yield plain_state(mapper, event)
        except Exception:  # noqa: BLE001,S112 -- see the docstring
            continue


def plain_state(mapper: Mapper[Any], stored: Any) -> bytes:
    """A stored event's JSON, decrypted and decompressed as `mapper` stores it."""
    state: bytes = stored.state
    if mapper.cipher:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor:
        state = mapper.compressor.decompress(state)
    return state
