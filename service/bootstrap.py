"""Builds the service's parts from settings, in one place for the server, worker and tools."""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from api import idempotency_keys
from membership import Organizations
from membership.database import ConfigurationError
from membership.personal_data import PersonalKeys
from projections import members, outbox, ratelimit_slots
from projections.engine import definitions, store
from projections.engine.rebuild import RETIRED_GRACE_S
from projections.engine.runner import ProjectionRunner
from projections.engine.sql import ReadDatabase
from service.postgres_snapshots import binary_snapshot_recorder
from service.settings import Settings
from service.snapshot_process import SnapshotProcess
from workers import cursors
from workers.jobs import JobRunner
from workers.mail.mailer import Mailer
from workers.mail.transport import transport_for
from workers.snapshots import SnapshotTaker

if TYPE_CHECKING:
    from flask import Flask

    from service.privacy import Erasure

log = logging.getLogger(__name__)
ELECTION_RETRY_S = 2.0  # server processes waiting to run the background work try again this often

# Tables besides the read models', each created by the module that owns it: state that is never
# rebuilt from events (kept across rebuilds).
OPERATIONAL_TABLES = (
    idempotency_keys.create_table,
    ratelimit_slots.create_tables,
    outbox.create_tables,
    cursors.create_table,
    members.create_activity_table,
)


def build_organizations(settings: Settings, **overrides: Any) -> Organizations:
    """The write side on the configured database; `overrides` are `Organizations` options (tests)."""
    options: dict[str, Any] = {
        "snapshot_in_commands": False,  # the worker takes them (workers.snapshots)
        "secret_key": settings.secret_key,
        "snapshot_interval": settings.snapshot_interval,
        "max_pending_invitations": settings.max_pending_invitations,
        "personal_keys": PersonalKeys(settings.master_keys()),
        "snapshot_recorder": binary_snapshot_recorder,
    }
    return Organizations(env=settings.eventsourcing_env(), **{**options, **overrides})


@dataclass
class Services:
    """The write side, the read models, and (when this process runs them) the projection runner."""

    settings: Settings
    organizations: Organizations
    read_db: ReadDatabase
    runner: ProjectionRunner | None = None
    mailer: Mailer | None = None
    jobs: JobRunner | None = None
    snapshots: SnapshotTaker | None = None
    snapshot_process: SnapshotProcess | None = None
    _closing: threading.Event = field(default_factory=threading.Event)
    _election: threading.Thread | None = None

    def start_projections(self) -> ProjectionRunner:
        """Run the read models, the invitation mailer and bulk jobs in background threads of this process."""
        self.runner = ProjectionRunner(self.organizations, self.read_db)
        self.runner.start()
        self.start_background_work()
        return self.runner

    def start_projections_in_one_process(self) -> threading.Thread:
        """`start_projections` in one of the server processes on this store at a time, not in each: they take
        turns for a lock, its holder runs the background work, and another takes over within
        ELECTION_RETRY_S of the holder's end. The others' commands are woken by its commits as by their own
        (ReadDatabase.follow_applied), and their interpreters are left to requests."""
        self._election = threading.Thread(
            target=self._start_projections_when_elected, name="background-election", daemon=True
        )
        self._election.start()
        return self._election

    def _start_projections_when_elected(self) -> None:
        lock = f"background-work:{self.settings.database.schema}"
        while not self._closing.is_set():
            try:
                with self.read_db.exclusive(lock) as mine:
                    if mine and not self._closing.is_set():
                        self.start_projections()
                        self._closing.wait()  # held while this process serves
                        return
            except Exception as error:  # an outage: the next try is soon
                log.warning("background work: the lock cannot be taken now (%s)", error)
            self._closing.wait(ELECTION_RETRY_S)

    def start_background_work(self, job_batch_size: int = 500) -> None:
        """The mailer, bulk jobs and snapshots (the worker process runs the projections itself)."""
        self.mailer = build_mailer(self)
        self.mailer.start()
        self.jobs = JobRunner(self.organizations, self.read_db, batch_size=job_batch_size)
        self.jobs.start()
        self.snapshot_process = SnapshotProcess(self.settings)
        self.snapshots = SnapshotTaker(
            self.organizations, self.read_db, self.settings.snapshot_interval, take=self.snapshot_process.take
        )
        self.snapshots.start()
        self.start_definition_rebuilds()

    def start_definition_rebuilds(self, retired_grace_s: float = RETIRED_GRACE_S) -> threading.Thread | None:
        """Rebuild, in a thread, the read models whose definition changed but whose tables still fit
        (see projections.engine.definitions); readers use the old tables until the switch, and the old
        tables are dropped `retired_grace_s` after it."""
        if not any(not o.columns_changed for o in definitions.outdated(self.read_db)):
            return None
        thread = threading.Thread(
            target=self._rebuild_outdated, args=(retired_grace_s,), name="definition-rebuild", daemon=True
        )
        thread.start()
        return thread

    def _rebuild_outdated(self, retired_grace_s: float) -> None:
        try:
            definitions.rebuild_outdated(self.organizations, self.read_db, self.settings.database, retired_grace_s)
        except Exception:  # the next start resumes it; meanwhile the old tables keep serving
            log.exception("the rebuild of a changed read model stopped")

    def erase_person(self, operator: str, email_address: str | None = None, user_id: str | None = None) -> Erasure:
        """Erase a person (service.privacy): the CLI's and the operators' API's one way."""
        from service.privacy import erase  # here: it needs the rebuild, which serving alone never loads

        return erase(self, operator, email_address=email_address, user_id=user_id)

    def close(self) -> None:
        self._closing.set()
        if self._election is not None:  # it may be starting the loops right now: they are then stopped below
            self._election.join(timeout=10)
        loops = [loop for loop in (self.snapshots, self.jobs, self.mailer, self.runner) if loop is not None]
        for loop in loops:  # all asked at once: each finishes its round side by side
            loop.request_stop()
        for loop in loops:
            loop.join()
        if self.snapshot_process is not None:
            self.snapshot_process.close()
        self.read_db.close()
        self.organizations.close()


def build_mailer(services: Services, **options: float) -> Mailer:
    settings = services.settings
    return Mailer(
        services.organizations,
        services.read_db,
        transport_for(settings.smtp, settings.database.var_dir),
        settings.smtp.sender,
        settings.public_url,
        retry_base_s=settings.smtp.retry_base_s,
        retry_max_s=settings.smtp.retry_max_s,
        lease_s=settings.smtp.lease_s,
        **options,  # type: ignore[arg-type]
    )


def build_services(settings: Settings) -> Services:
    """Open the stores and make sure every table exists (once, however many processes start together)."""
    read_db = ReadDatabase(settings.database)
    try:
        with read_db.schema_lock():
            organizations = build_organizations(settings)
            store.setup(read_db, *OPERATIONAL_TABLES)
        check_event_encoding(organizations)
        organizations.exclusive_across_processes = read_db.organization_lock
    except BaseException:
        read_db.close()  # its pool's threads would otherwise go on trying to connect
        raise
    return Services(settings, organizations, read_db)


def check_event_encoding(organizations: Organizations) -> None:
    """The first stored event must read with these settings: a store written without encryption, or with
    another MEMBERSHIP_EVENT_CIPHER_KEY or compression, is refused at start in one line, not at the first
    command that touches an old organization."""
    first = organizations.recorder.select_notifications(start=1, limit=1)
    if not first:
        return
    try:
        organizations.mapper.to_domain_event(first[0])
    except Exception as error:
        raise ConfigurationError(
            "the stored events cannot be read with these settings: they were written with another"
            f" MEMBERSHIP_EVENT_CIPHER_KEY or MEMBERSHIP_EVENT_COMPRESSION (or none) ({type(error).__name__})"
        ) from None


def wsgi_app(services: Services) -> Flask:
    """The API and the pages over the service's parts."""
    from api.app import create_app  # here: the worker and the operators' commands never load Flask
    from web.site import install

    app = create_app(services)
    install(app, services)
    return app


def build_app(settings: Settings, run_projections: bool = False) -> Flask:
    """The API over freshly built parts, closed at exit. Called in each server process (after the fork).

    `run_projections` runs the projection runner and the background duties in threads of one of the
    server processes (Services.start_projections_in_one_process): the embedded SQLite set-up, or
    PostgreSQL with `membership serve --with-worker`.
    """
    services = build_services(settings)
    atexit.register(services.close)
    app = wsgi_app(services)
    if run_projections:
        services.start_projections_in_one_process()
    return app
