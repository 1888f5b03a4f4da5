"""Erasing a person (GDPR Art. 17) by crypto-shredding, on both stores.

A person is invited by e-mail (the mailer writes the message to the outbox), joins, acts in two organizations
(inviting, creating a link, requesting a bulk job, an idempotent request whose answer names them), is
snapshotted and projected everywhere. While they own an organization the erasure is refused and changes
nothing; once ownership moved, `membership privacy erase` runs. Then every table (events, snapshots, keys,
read models, operational tables), every file the service wrote and every log line is searched for their
address and name: none holds either. The organizations still replay with their invariants, the audit trail
and the temporal queries show the placeholder, another process that cached them drops the person, and the
address can be invited again as a new person.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner

from api import idempotency_keys
from membership import Actor
from projections.engine.sql import ReadDatabase
from service import privacy
from service.bootstrap import Services, build_mailer, build_services
from service.cli import main
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.e2e.conftest import BOTH_STORES, JWT_SECRET, ApiClient, problem
from tests.helpers import assert_invariants
from workers.snapshots import SnapshotTaker

pytestmark = BOTH_STORES

ADDRESS = "zoe.erasable@example.com"
NAME = "Zoe Q. Erasable"
PLACEHOLDER = re.compile(r"erased-[0-9a-f]{8}@erased\.invalid")


def everything_stored(db: ReadDatabase) -> str:
    """Every value of every row of every table in the service's database, as text (bytes as latin-1)."""
    with db.snapshot() as cursor:
        if db.is_sqlite:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        tables = [row[0] for row in cursor.fetchall()]
        chunks = []
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 -- the tables' own names
            for row in cursor.fetchall():
                chunks.extend(_text(value) for value in row)
    assert len(tables) > 20, tables  # the events, snapshots, keys, every read model and operational table
    return "\n".join(chunks).lower()


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


def everything_written(directory: Path) -> str:
    chunks = []
    for path in directory.rglob("*"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):  # a temporary file renamed meanwhile
            chunks.append(path.read_bytes().decode("latin-1"))
    return "\n".join(chunks).lower()


def cli(settings: Settings, *args: str) -> Any:
    env = {
        "MEMBERSHIP_DATABASE_URL": settings.database.url,
        "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
        "MEMBERSHIP_VAR_DIR": str(settings.database.var_dir),
        "MEMBERSHIP_JWT_SECRET": JWT_SECRET,
    }
    return CliRunner().invoke(main, list(args), env=env)


OPERATOR_TOKEN = "operator-token-" + "o" * 32


@pytest.fixture
def api_settings(store: str, settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(
        store, MEMBERSHIP_JWT_SECRET=JWT_SECRET, MEMBERSHIP_PUBLIC_URL="https://ocore.example.com",
        MEMBERSHIP_OPERATOR_TOKEN=OPERATOR_TOKEN,
    )


def kept_answers_naming(services: Services, text: str) -> int:
    with services.read_db.snapshot() as cursor:
        cursor.execute(f"SELECT scope, payload FROM {idempotency_keys.TABLE} WHERE payload IS NOT NULL")
        rows = cursor.fetchall()
    secret = services.settings.secret_key
    return sum(text in json.dumps(idempotency_keys.open_sealed(secret, scope, payload)) for scope, payload in rows)


@pytest.fixture
def zoe() -> Actor:
    return Actor(user_id="zoe-7", email=ADDRESS, name=NAME)


def test_an_erased_person_is_nowhere_and_everything_still_replays(
    api: ApiClient, api_settings: Settings, zoe: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    services, app = api.services, api.services.organizations
    owner = api.user("owner")
    org = api.new_org(owner, "Erasure Co")

    # Invited by e-mail: the mailer writes the message (address, name of nobody yet, link) to the outbox.
    invited = api.post(
        "/api/members/invite", owner, org, json={"email": ADDRESS, "roleId": api.role_id(org, "Admin", owner)},
        headers={"Idempotency-Key": "invite-zoe"},
    )  # fmt: skip
    assert invited.status_code == 201, invited.json
    api.caught_up()
    mailer = build_mailer(services)  # beside the service's own, which may have sent it already
    outbox = services.settings.database.var_dir / "outbox"
    deadline = time.monotonic() + 10
    while ADDRESS not in everything_written(outbox) and time.monotonic() < deadline:
        mailer.run_once()
        time.sleep(0.05)
    assert ADDRESS in everything_written(outbox)
    accepted = api.post("/api/auth/accept-invite", zoe, json={"token": api.invitation_token(org, invited.json["id"])})
    assert accepted.status_code == 200, accepted.json

    # Zoe acts: invites someone, makes a link, changes a role, requests a bulk job; owns a second organization.
    kim = api.user("kim")
    assert api.post("/api/members/invite", zoe, org, json={"email": kim.email,
                    "roleId": api.role_id(org, "Viewer", zoe)}).status_code == 201  # fmt: skip
    assert api.post("/api/invite-links", zoe, org, json={"roleId": api.role_id(org, "Viewer", zoe)}).status_code == 201
    other = api.join(org, owner, "Viewer", "other")
    other_id = api.member_id(org, other, owner)
    jobs = api.post("/api/members/bulk/role", zoe, org, json={"memberIds": [other_id],
                    "roleId": api.role_id(org, "Developer", zoe)})  # fmt: skip
    assert jobs.status_code == 202, jobs.json
    own = api.new_org(zoe, "Zoe's Own")
    successor = api.join(own, zoe, "Admin", "successor")
    api.settled()  # the mailer's rows too: they are counted below
    SnapshotTaker(app, services.read_db, interval=2).run_once()  # snapshots hold her in the clear
    assert app.snapshots is not None and list(app.snapshots.get(UUID(org)))
    before = everything_stored(services.read_db)
    assert ADDRESS in before and NAME.lower() in before
    assert kept_answers_naming(services, ADDRESS) == 1  # encrypted, but with a key the service holds

    # Refused while she owns an organization: nothing changes.
    refused = cli(api_settings, "privacy", "erase", "--email", ADDRESS, "--yes", "--operator", "dpo")
    assert refused.exit_code == 1 and "Owner" in refused.stderr, refused.output
    assert app.get_organization(UUID(org)).member_for_user(zoe.user_id) is not None
    assert everything_stored(services.read_db).count(ADDRESS) == before.count(ADDRESS)

    successor_id = api.member_id(own, successor, zoe)
    assert api.post(f"/api/members/{successor_id}/transfer-ownership", zoe, own).status_code == 200
    api.caught_up()

    erased = cli(api_settings, "privacy", "erase", "--email", ADDRESS.upper(), "--yes", "--operator", "dpo")
    assert erased.exit_code == 0, erased.output
    assert sorted(json.loads(erased.stdout)["organizations"]) == sorted([org, own])
    api.caught_up()

    # Nowhere: not in any table, snapshot, file or log line.
    stored = everything_stored(services.read_db)
    assert ADDRESS not in stored and NAME.lower() not in stored
    if services.read_db.is_sqlite:  # the file itself: no deleted row or dropped table lingers in its pages
        path = services.settings.database.sqlite_path
        assert path is not None
        raw = b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*") if p.is_file()).lower()
        assert ADDRESS.encode() not in raw and NAME.lower().encode() not in raw
    assert kept_answers_naming(services, ADDRESS) == 0
    assert ADDRESS not in everything_written(services.settings.database.var_dir)
    assert NAME.lower() not in everything_written(services.settings.database.var_dir)
    logged = "\n".join(record.getMessage() for record in caplog.records).lower() + erased.output.lower()
    assert ADDRESS not in logged and NAME.lower() not in logged

    # Still replays, in a new process, with its invariants; she is no longer a member; the audit names the
    # placeholder where she acted, and the past as of before the erasure shows the placeholder too.
    fresh = build_services(api_settings)
    try:
        state = fresh.organizations.get_organization(UUID(org))
        assert state.member_for_user(zoe.user_id) is None
        assert_invariants(fresh.organizations, UUID(org))
        assert_invariants(fresh.organizations, UUID(own))
        invitations = [i.email for i in state.invitations.values()]
        assert any(PLACEHOLDER.fullmatch(address) for address in invitations), invitations
    finally:
        fresh.close()
    audit = api.get("/api/audit-log?limit=200", owner, org).json["events"]
    actors = {entry["actor"]["email"] for entry in audit}
    assert any(PLACEHOLDER.fullmatch(actor or "") for actor in actors), actors
    assert audit[0]["type"] == "PersonErased"
    pending = api.get("/api/invitations?status=pending", owner, org).json["invitations"]
    assert [i["email"] for i in pending] == [kim.email]  # hers is cancelled, the one she sent stands

    # The process that cached her organization and her key before (this one) shows the placeholder too.
    old_version = app.organization_at(UUID(org), 3)
    assert all(ADDRESS not in m.email for m in old_version.members.values())
    assert app.get_organization(UUID(org)).member_for_user(zoe.user_id) is None

    # Recorded without personal data; invited again, she is a new person.
    erasures = cli(api_settings, "privacy", "erasures")
    assert erasures.exit_code == 0 and "dpo" in erasures.stdout and ADDRESS not in erasures.stdout
    again = api.post(
        "/api/members/invite", owner, org, json={"email": ADDRESS, "roleId": api.role_id(org, "Viewer", owner)}
    )
    assert again.status_code == 201, again.json
    assert again.json["email"] == ADDRESS
    assert app.personal_keys is not None and len(app.personal_keys.find(email=ADDRESS)) == 1


def test_erasing_nobody_says_so(api: ApiClient, api_settings: Settings) -> None:
    result = cli(api_settings, "privacy", "erase", "--email", "nobody@example.com", "--yes")
    assert result.exit_code == 1 and "Nobody" in result.stderr


def test_operators_erase_over_http_with_their_token_only(api: ApiClient, zoe: Actor) -> None:
    def erase(body: dict[str, str], token: str = OPERATOR_TOKEN) -> Any:
        return api.client.post("/api/operator/erasures", json=body, headers={"Authorization": f"Bearer {token}"})

    org = api.new_org(zoe, "Zoe's")
    member = api.join(org, zoe, "Viewer", "member")
    problem(erase({"email": member.email}, token="x" * 40), 401, "operator_token_required")
    problem(api.client.post("/api/operator/erasures", json={"email": member.email}), 401, "operator_token_required")
    problem(erase({"email": member.email, "userId": member.user_id}), 422, "validation_failed")
    problem(erase({"userId": zoe.user_id}), 409, "owner_cannot_be_erased")
    problem(erase({"email": "nobody@example.com"}), 404, "person_not_found")

    done = erase({"userId": member.user_id})
    assert done.status_code == 200, done.json
    assert done.json["organizations"] == [org] and len(done.json["pseudonyms"]) == 1
    members = api.get("/api/members", zoe, org).json["members"]
    assert [m["userId"] for m in members] == [zoe.user_id]
    problem(erase({"userId": member.user_id}), 404, "person_not_found")  # nothing of theirs is left


def test_a_rotated_master_key_still_opens_every_key(api: ApiClient, api_settings: Settings, zoe: Actor) -> None:
    org = api.new_org(zoe, "Rotating")
    api.caught_up()
    new_key = "A" * 43 + "="
    env = {"MEMBERSHIP_DATA_KEY": new_key}
    rotated = CliRunner().invoke(main, ["privacy", "rotate-key"], env={
        "MEMBERSHIP_DATABASE_URL": api_settings.database.url, "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
        "MEMBERSHIP_VAR_DIR": str(api_settings.database.var_dir), **env})  # fmt: skip
    assert rotated.exit_code == 0 and "re-wrapped 2 keys" in rotated.stdout, rotated.output  # hers and the hash secret
    settings = Settings.from_env({"MEMBERSHIP_DATABASE_URL": api_settings.database.url,
                                  "MEMBERSHIP_SECRET_KEY": "x" * 40, **env})  # fmt: skip (the old one is not needed)
    fresh = build_services(settings)
    try:
        assert fresh.organizations.get_organization(UUID(org)).member_for_user(zoe.user_id).email == ADDRESS
    finally:
        fresh.close()


def test_an_erasure_stopped_after_the_key_went_is_finished_later(
    api: ApiClient, api_settings: Settings, zoe: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Half Done")
    api.post("/api/members/invite", owner, org, json={"email": ADDRESS, "roleId": api.role_id(org, "Viewer", owner)})
    api.caught_up()
    original = privacy.Rebuild.run

    def broken(self: Any, restart: bool = False) -> dict[str, int]:
        raise RuntimeError("the database went away mid-rebuild")

    monkeypatch.setattr(privacy.Rebuild, "run", broken)
    stopped = cli(api_settings, "privacy", "erase", "--email", ADDRESS, "--yes", "--operator", "dpo")
    assert stopped.exit_code == 1
    (record,) = json.loads(cli(api_settings, "privacy", "erasures").stdout)
    assert record["finished_at"] is None and record["organizations"] == [org]
    assert ADDRESS in everything_stored(api.services.read_db)  # the read models still hold it: not finished

    monkeypatch.setattr(privacy.Rebuild, "run", original)
    finished = cli(api_settings, "privacy", "erase", "--finish")
    assert finished.exit_code == 0 and json.loads(finished.stdout)["finished"] == [record["pseudonym"]]
    assert json.loads(cli(api_settings, "privacy", "erasures").stdout)[0]["finished_at"] is not None
    api.caught_up()
    assert ADDRESS not in everything_stored(api.services.read_db)


def test_one_erasure_at_a_time_and_never_everyone_by_an_empty_user_id(api: ApiClient, api_settings: Settings) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    member = api.join(org, owner, "Viewer", "member")
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with api.services.read_db.exclusive("erasure") as mine:
        assert mine
        busy = api.client.post("/api/operator/erasures", json={"email": member.email}, headers=headers)
        problem(busy, 409, "erasure_in_progress")
    assert cli(api_settings, "privacy", "erase", "--user-id", "", "--yes").exit_code == 2  # a usage error
    problem(api.client.post("/api/operator/erasures", json={"userId": ""}, headers=headers), 422, "validation_failed")
    assert api.client.post("/api/operator/erasures", json={"email": member.email}, headers=headers).status_code == 200
