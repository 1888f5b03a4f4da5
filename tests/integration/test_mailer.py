"""Invitation e-mail against a real SMTP server (aiosmtpd on a free port), on both stores."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from api.schemas import InvitationSchema
from membership import Actor, organization
from membership.exceptions import InvitationReplacedError
from projections import invitations as invitations_reads
from projections import outbox
from projections.engine.runner import ProjectionRunner
from projections.invitations import InvitationRecord
from service.bootstrap import Services, build_mailer, build_services
from service.settings import Settings
from tests.conftest import EMBEDDED_STORE_ONLY, TEST_SECRET_KEY
from tests.factories import Clock, new_actor
from tests.helpers import role_id, table_rows
from tests.servers import MEMBERSHIP, free_port
from workers.mail.mailer import Mailer
from workers.mail.transport import NO_SMTPUTF8

PUBLIC_URL = "https://ocore.example.com"
SENDER = "oCore <invitations@ocore.example.com>"


class Inbox:
    """An aiosmtpd handler that keeps every message and refuses addresses containing 'bounce' (550)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[list[str], list[str], bytes]] = []  # RCPT TO, MAIL FROM options, raw message
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "bounce" in address:
            return f"550 5.1.1 <{address.upper()}>: Recipient address rejected: No such user"  # as Postfix does
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))  # type: ignore[arg-type]
            self.envelopes.append((list(envelope.rcpt_tos), list(envelope.mail_options), envelope.original_content))  # type: ignore[arg-type]
        return "250 Message accepted"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(m["Message-ID"]) for m in self.messages]


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp_server(inbox: Inbox, smtp_port: int) -> Iterator[Callable[..., None]]:
    """Call it to start the server (tests may first run with nothing listening), with or without SMTPUTF8."""
    controllers: list[Controller] = []

    def start(smtputf8: bool = True) -> None:
        controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port, enable_SMTPUTF8=smtputf8)
        controller.start()
        controllers.append(controller)

    yield start
    for controller in controllers:
        controller.stop()


def smtp_env(port: int) -> dict[str, str]:
    return {
        "MEMBERSHIP_SMTP_HOST": "127.0.0.1",
        "MEMBERSHIP_SMTP_PORT": str(port),
        "MEMBERSHIP_SMTP_STARTTLS": "false",
        "MEMBERSHIP_SMTP_FROM": SENDER,
        "MEMBERSHIP_PUBLIC_URL": PUBLIC_URL,
        "MEMBERSHIP_SMTP_RETRY_BASE_SECONDS": "30",
        "MEMBERSHIP_SMTP_LEASE_SECONDS": "2",
    }


@pytest.fixture
def mail_settings(store: str, settings_for: Callable[..., Settings], smtp_port: int) -> Settings:
    return settings_for(store, **smtp_env(smtp_port))


@pytest.fixture
def scene(mail_settings: Settings) -> Iterator[tuple[Services, Mailer, Clock]]:
    services = build_services(mail_settings)
    services.runner = ProjectionRunner(services.organizations, services.read_db)
    clock = Clock()
    services.organizations.clock = clock
    yield services, build_mailer(services), clock
    services.close()


def invite(services: Services, email_address: str = "") -> tuple[UUID, UUID, str]:
    """An organization and one invitation; returns (org, invitation, recipient)."""
    app, owner = services.organizations, new_actor("olivia")
    org = app.create_organization(owner, "Acme Rockets").organization_id
    recipient = email_address or new_actor("dev").email
    receipt = app.invite_member(org, owner, recipient, role_id(app, org, "Developer"), expires_in_days=5)
    assert receipt.id is not None
    return org, receipt.id, recipient


def token_in(message: Message) -> str:
    plain = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    match = re.search(r"/invite/accept\?token=([A-Za-z0-9_-]+)", plain.get_payload(decode=True).decode())
    assert match, "no accept link in the plain-text part"
    return match.group(1)


def email_status(services: Services, invitation_id: UUID) -> tuple[str, Any]:
    services.runner.catch_up()  # type: ignore[union-attr]
    ((status, last_sent_at),) = table_rows(
        services, "SELECT email_status, last_sent_at FROM {invitations} WHERE invitation_id = %s", str(invitation_id)
    )
    return status, last_sent_at


@EMBEDDED_STORE_ONLY
def test_the_invitation_e_mail_names_everything_and_its_link_works(
    scene: tuple, smtp_server: Callable, inbox: Inbox
) -> None:
    services, mailer, _ = scene
    smtp_server()
    org, invitation, recipient = invite(services)
    assert email_status(services, invitation) == ("queued", None)

    mailer.run_once()

    (message,) = inbox.messages
    assert message["To"] == recipient and message["From"] == SENDER
    assert message["Subject"] == "Olivia invited you to join Acme Rockets on oCore"
    assert re.fullmatch(rf"<invitation\.{invitation}\.[0-9a-f]{{16}}@ocore\.example\.com>", message["Message-ID"])
    assert {part.get_content_type() for part in message.walk()} >= {"text/plain", "text/html"}
    plain = next(p for p in message.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "Acme Rockets" in plain and "Olivia" in plain and "as Developer" in plain and "expires on" in plain
    assert f"{PUBLIC_URL}/invite/accept?token=" in plain
    joined = services.organizations.accept_invitation(invitee(recipient), token_in(message))
    assert joined.organization_id == org
    status, sent_at = email_status(services, invitation)
    assert status == "sent" and sent_at is not None


def test_an_unreachable_server_is_retried_until_the_message_goes_once(
    scene: tuple, smtp_server: Callable, inbox: Inbox
) -> None:
    services, mailer, clock = scene
    _, invitation, _ = invite(services)

    mailer.run_once()  # nothing listens: the delivery is kept for later
    assert outbox.counts(services.read_db) == {"queued": 1}
    smtp_server()
    mailer.run_once()  # not due yet (backoff)
    assert inbox.messages == []
    clock.advance(seconds=31)
    mailer.run_once()
    mailer.run_once()

    assert len(inbox.messages) == 1
    assert outbox.counts(services.read_db) == {"sent": 1}
    assert email_status(services, invitation)[0] == "sent"


def test_a_resend_sends_a_second_distinct_message_and_only_its_token_works(
    scene: tuple, smtp_server: Callable, inbox: Inbox
) -> None:
    services, mailer, _ = scene
    smtp_server()
    org, invitation, recipient = invite(services)
    mailer.run_once()
    services.organizations.resend_invitation(org, _owner(services, org), invitation)
    mailer.run_once()

    first, second = inbox.messages
    assert first["Message-ID"] != second["Message-ID"]
    user = invitee(recipient)
    with pytest.raises(InvitationReplacedError):
        services.organizations.accept_invitation(user, token_in(first))
    services.organizations.accept_invitation(user, token_in(second))


def test_cancelled_and_accepted_invitations_send_nothing_more(
    scene: tuple, smtp_server: Callable, inbox: Inbox
) -> None:
    services, mailer, _ = scene
    smtp_server()
    org, cancelled, _ = invite(services)
    services.organizations.cancel_invitation(org, _owner(services, org), cancelled)
    mailer.run_once()
    assert inbox.messages == []
    assert outbox.counts(services.read_db) == {"skipped": 1}


def test_a_permanent_refusal_is_recorded_as_failed_and_not_retried(
    scene: tuple, smtp_server: Callable, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    services, mailer, clock = scene
    smtp_server()
    _, invitation, address = invite(services, new_actor("bounce").email)
    mailer.run_once()
    clock.advance(hours=2)
    mailer.run_once()

    assert inbox.messages == []
    assert outbox.counts(services.read_db) == {"failed": 1}
    assert email_status(services, invitation)[0] == "failed"
    types = table_rows(services, "SELECT event_type, details FROM {audit_log} WHERE target_id = %s", str(invitation))
    assert [t for t, _ in types] == ["MemberInvited", "InvitationEmailFailed"]
    reason = json.loads(types[1][1])["reason"]
    assert "550" in reason and "<recipient>" in reason
    # The server's reply named the address: not kept in the event (forever), the mailer's row or the log.
    (last_error,) = table_rows(services, "SELECT last_error FROM mail_deliveries")[0]
    for kept in (reason, last_error, caplog.text):
        assert address.lower() not in kept.lower()


def test_a_round_records_one_organizations_outcomes_in_one_save_and_each_invitation_shows_its_own(
    scene: tuple, smtp_server: Callable, inbox: Inbox
) -> None:
    services, mailer, _ = scene
    smtp_server()
    app, owner = services.organizations, new_actor("olivia")
    org = app.create_organization(owner, "Acme Rockets").organization_id
    developer = role_id(app, org, "Developer")
    sent = [app.invite_member(org, owner, new_actor("dev").email, developer).id for _ in range(3)]
    bounced = app.invite_member(org, owner, new_actor("bounce").email, developer).id
    saves: list[int] = []
    app.save_listeners.append(saves.append)
    mailer.run_once()
    assert len(saves) == 1  # four outcomes, one write to the organization's stream
    assert len(inbox.messages) == 3
    assert [email_status(services, invitation)[0] for invitation in [*sent, bounced]] == [*["sent"] * 3, "failed"]


def test_other_deliveries_keep_flowing_past_a_failing_one(scene: tuple, smtp_server: Callable, inbox: Inbox) -> None:
    services, mailer, _ = scene
    smtp_server()
    invite(services, new_actor("bounce").email)
    _, good, recipient = invite(services)
    mailer.run_once()
    assert [m["To"] for m in inbox.messages] == [recipient]


@EMBEDDED_STORE_ONLY
def test_without_smtp_messages_land_in_var_outbox_and_the_log_names_the_file_only(
    store: str, settings_for: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(store)  # no MEMBERSHIP_SMTP_HOST
    services = build_services(settings)
    try:
        mailer = build_mailer(services)
        _, invitation, recipient = invite(services)
        with caplog.at_level("INFO", logger="workers.mail.transport"):
            mailer.run_once()
        files = list((settings.database.var_dir / "outbox").glob(f"invitation.{invitation}.*.eml"))
        assert len(files) == 1
        assert list(files[0].parent.iterdir()) == files  # written atomically: no temporary file is left
        message = email.message_from_bytes(files[0].read_bytes())
        assert message["To"] == recipient
        assert str(files[0]) in caplog.text
        # The link's token admits whoever reads it, and the address is personal data: the file holds them.
        assert token_in(message) not in caplog.text and recipient not in caplog.text
    finally:
        services.close()


def test_a_worker_killed_mid_batch_loses_no_message_and_repeats_no_message_id(
    store: str, smtp_port: int, smtp_server: Callable, inbox: Inbox, scene: tuple
) -> None:
    services, mailer, clock = scene
    smtp_server()
    app, owner = services.organizations, new_actor("owner")
    org = app.create_organization(owner, "Many").organization_id
    count = 40
    for n in range(count):
        app.invite_member(org, owner, f"person{n}@example.com", role_id(app, org, "Viewer"))
    env = {
        **os.environ,
        "MEMBERSHIP_DATABASE_URL": store,
        "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
        **smtp_env(smtp_port),
    }

    worker = subprocess.Popen([MEMBERSHIP, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(inbox.messages) > 0)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    delivered_before_restart = len(inbox.messages)
    assert 0 < delivered_before_restart < count  # killed mid-batch

    clock.advance(seconds=3)  # past the lease (2 s) the killed worker held on the deliveries it had claimed
    wait_until(lambda: mailer.run_once() == 0)  # another mailer takes them up, round after round

    ids = inbox.message_ids()
    assert len(set(ids)) == count  # none lost
    # A message handed over just before the kill but not yet marked may go once more, with the same Message-ID.
    assert len(ids) - len(set(ids)) <= 1
    assert outbox.counts(services.read_db) == {"sent": count}


# -- one delivery never holds up another; the invitation says what became of its e-mail -----------------------
POISONED = [
    "evil\r\nbcc: victim@example.com@example.com",  # CR/LF from a token's claim: would inject a header
    "p\u0430ypal@example.com",  # a Cyrillic "а" in a Latin name
    "user@example.com\u202e",  # a bidi override
]


def invite_bypassing_the_address_rule(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[UUID]:
    """Invitations as stored before the rule existed: the domain refuses these addresses today."""
    app, owner = services.organizations, new_actor("mallory")
    org = app.create_organization(owner, "Poisoned").organization_id
    with monkeypatch.context() as patched:
        patched.setattr(organization, "validate_email", lambda address: address)
        receipts = [app.invite_member(org, owner, a, role_id(app, org, "Viewer")) for a in POISONED]
    return [receipt.id for receipt in receipts if receipt.id is not None]


def invitation_record(services: Services, invitation_id: UUID, now: datetime) -> InvitationRecord:
    services.runner.catch_up()  # type: ignore[union-attr]
    ((org,),) = table_rows(
        services, "SELECT organization_id FROM {invitations} WHERE invitation_id = %s", str(invitation_id)
    )
    record = invitations_reads.get_invitation(services.read_db, UUID(str(org)), invitation_id, now)
    assert record is not None
    return record


def test_deliveries_that_cannot_be_composed_fail_alone_and_the_others_go_in_the_same_round(
    scene: tuple, smtp_server: Callable, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, mailer, clock = scene
    smtp_server()
    poisoned = invite_bypassing_the_address_rule(services, monkeypatch)
    mailer.ingest()  # claimed first in the round: due before the others
    clock.advance(seconds=1)
    good = [invite(services) for _ in range(3)]  # another organization each

    mailer.run_once()

    assert sorted(m["To"] for m in inbox.messages) == sorted(recipient for _, _, recipient in good)
    for invitation_id in poisoned:
        record = invitation_record(services, invitation_id, clock())
        assert record.email_status == "failed" and record.next_attempt_at is None
        assert record.last_error and record.last_error.startswith("cannot compose the message: the recipient")
    reasons = [str(invitation_record(services, i, clock()).last_error) for i in poisoned]
    assert "control character (U+000D)" in reasons[0] and "mixes Cyrillic and Latin" in reasons[1]
    assert "bidirectional control character (U+202E)" in reasons[2]
    assert all(invitation_record(services, i, clock()).email_status == "sent" for _, i, _ in good)
    clock.advance(hours=1)
    mailer.run_once()
    assert len(inbox.messages) == 3 and outbox.counts(services.read_db) == {"failed": 3, "sent": 3}


def test_an_unexpected_error_with_one_delivery_retries_it_alone_later(
    scene: tuple, smtp_server: Callable, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    services, mailer, clock = scene
    smtp_server()
    db = services.read_db
    with db.transaction() as cursor:  # a corrupt row: its organization id is no UUID
        row = ("<corrupt@ocore.example.com>", "not-a-uuid", "not-a-uuid", "nonce", "x@example.com", "", clock())
        outbox.enqueue(db, cursor, [row], clock())
    clock.advance(seconds=1)
    _, good, recipient = invite(services)

    with caplog.at_level(logging.WARNING, logger="workers.mail.mailer"):
        mailer.run_once()

    assert [m["To"] for m in inbox.messages] == [recipient]
    assert invitation_record(services, good, clock()).email_status == "sent"
    ((status, error, next_attempt_at),) = table_rows(
        services, "SELECT status, last_error, next_attempt_at FROM mail_deliveries WHERE organization_id = 'not-a-uuid'"
    )
    assert status == "queued" and str(error).startswith("unexpected error: ValueError")
    assert db.when(next_attempt_at) > clock() + timedelta(seconds=25)  # backoff, not the next round
    assert any(r.levelno == logging.WARNING and "<corrupt@" in r.getMessage() for r in caplog.records)


def test_an_unreachable_server_shows_retrying_and_degrades_health_until_the_message_goes(
    scene: tuple, smtp_server: Callable, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    services, mailer, clock = scene
    _, invitation, _ = invite(services)
    assert invitation_record(services, invitation, clock()).email_status == "queued"

    with caplog.at_level(logging.WARNING, logger="workers.mail.mailer"):
        mailer.run_once()  # nothing listens

    record = invitation_record(services, invitation, clock())
    assert record.email_status == "retrying" and record.last_error and "Connection" in record.last_error
    assert record.next_attempt_at is not None and record.next_attempt_at > clock() + timedelta(seconds=25)
    shown = InvitationSchema().dump(record)
    assert shown["emailStatus"] == "retrying" and shown["lastError"] == record.last_error
    assert shown["nextAttemptAt"] == record.next_attempt_at.isoformat()
    health = outbox.health(services.read_db, clock())
    assert (health.status, health.retrying, health.last_error) == ("degraded", 1, record.last_error)
    assert any(r.levelno == logging.WARNING and "not sent" in r.getMessage() for r in caplog.records)

    smtp_server()
    clock.advance(seconds=31)
    mailer.run_once()

    record = invitation_record(services, invitation, clock())
    assert (record.email_status, record.last_error, record.next_attempt_at) == ("sent", None, None)
    assert len(inbox.messages) == 1
    health = outbox.health(services.read_db, clock())
    assert (health.status, health.retrying, health.sent_last_hour) == ("ok", 0, 1)


def test_the_status_shown_is_the_current_tokens_e_mail_after_a_resend(
    scene: tuple, smtp_server: Callable, inbox: Inbox
) -> None:
    services, mailer, clock = scene
    org, invitation, _ = invite(services)
    mailer.run_once()  # nothing listens
    assert invitation_record(services, invitation, clock()).email_status == "retrying"

    clock.advance(seconds=1)
    services.organizations.resend_invitation(org, _owner(services, org), invitation)
    record = invitation_record(services, invitation, clock())
    assert (record.email_status, record.last_error, record.next_attempt_at) == ("queued", None, None)
    mailer.ingest()  # the old token's delivery, waiting to be retried, is dropped
    record = invitation_record(services, invitation, clock())
    assert (record.email_status, record.last_error) == ("queued", None) and record.next_attempt_at is not None
    assert outbox.health(services.read_db, clock()).retrying == 0

    smtp_server()
    mailer.run_once()

    assert len(inbox.messages) == 1
    assert invitation_record(services, invitation, clock()).email_status == "sent"
    assert outbox.counts(services.read_db) == {"sent": 1, "skipped": 1}


def test_health_is_ok_when_mail_flows_and_degraded_when_due_mail_waits_too_long(scene: tuple) -> None:
    services, mailer, clock = scene
    assert outbox.health(services.read_db, clock()).status == "ok"
    invite(services)
    mailer.ingest()  # queued, and nobody delivers it
    assert outbox.health(services.read_db, clock()).status == "ok"
    waited = outbox.health(services.read_db, clock() + timedelta(minutes=6))
    assert waited.status == "degraded" and waited.oldest_due_age_s is not None and waited.oldest_due_age_s > 300


@EMBEDDED_STORE_ONLY
@pytest.mark.parametrize("smtputf8", [True, False])
def test_a_unicode_local_part_needs_a_server_with_smtputf8(
    scene: tuple, smtp_server: Callable, inbox: Inbox, smtputf8: bool
) -> None:
    services, mailer, clock = scene
    smtp_server(smtputf8=smtputf8)
    _, invitation, recipient = invite(services, "pö@example.com")

    mailer.run_once()
    clock.advance(hours=1)
    mailer.run_once()

    record = invitation_record(services, invitation, clock())
    if smtputf8:
        ((rcpt_tos, mail_options, raw),) = inbox.envelopes
        assert rcpt_tos == [recipient] and "SMTPUTF8" in mail_options
        assert email.message_from_bytes(raw, policy=email.policy.SMTPUTF8)["To"] == recipient
        assert (record.email_status, record.last_error) == ("sent", None)
    else:
        assert inbox.envelopes == []
        assert (record.email_status, record.last_error) == ("failed", NO_SMTPUTF8)
        assert outbox.counts(services.read_db) == {"failed": 1}


@EMBEDDED_STORE_ONLY
def test_an_idn_domain_goes_in_punycode_so_any_server_takes_it(
    scene: tuple, smtp_server: Callable, inbox: Inbox
) -> None:
    services, mailer, clock = scene
    smtp_server(smtputf8=False)
    _, invitation, _ = invite(services, "user@Bücher.example")

    mailer.run_once()

    ((rcpt_tos, mail_options, raw),) = inbox.envelopes
    assert rcpt_tos == ["user@xn--bcher-kva.example"] and "SMTPUTF8" not in mail_options
    assert email.message_from_bytes(raw)["To"] == "user@xn--bcher-kva.example"
    record = invitation_record(services, invitation, clock())
    assert (record.email, record.email_status) == ("user@bücher.example", "sent")


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def invitee(email_address: str) -> Actor:
    return Actor(new_actor("dev").user_id, email_address, "Dev")


def _owner(services: Services, org: UUID) -> Actor:
    with services.organizations.reading(org) as aggregate:
        owner = aggregate.owner
    return Actor(owner.user_id, owner.email, owner.name)
