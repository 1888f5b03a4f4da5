"""Builds the service's parts from settings, in one place for the server, worker and tools."""

from __future__ import annotations

from dataclasses import dataclass

from membership import Organizations
from membership.settings import Settings
from projections import store
from projections.job_runner import JobRunner
from projections.mail.mailer import Mailer
from projections.mail.transport import transport_for
from projections.runner import ProjectionRunner
from projections.snapshots import SnapshotTaker
from projections.sql import ReadDatabase


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

    def start_projections(self) -> ProjectionRunner:
        """Run the read models, the invitation mailer and bulk jobs in background threads of this process."""
        self.runner = ProjectionRunner(self.organizations, self.read_db)
        self.runner.start()
        self.start_background_work()
        return self.runner

    def start_background_work(self, job_batch_size: int = 500) -> None:
        """The mailer, bulk jobs and snapshots (the worker process runs the projections itself)."""
        self.mailer = build_mailer(self)
        self.mailer.start()
        self.jobs = JobRunner(self.organizations, self.read_db, batch_size=job_batch_size)
        self.jobs.start()
        self.snapshots = SnapshotTaker(self.organizations, self.read_db, self.settings.snapshot_interval)
        self.snapshots.start()

    def close(self) -> None:
        if self.snapshots is not None:
            self.snapshots.stop()
        if self.jobs is not None:
            self.jobs.stop()
        if self.mailer is not None:
            self.mailer.stop()
        if self.runner is not None:
            self.runner.stop()
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
            organizations = Organizations.from_settings(settings)
            store.setup(read_db)
    except BaseException:
        read_db.close()  # its pool's threads would otherwise go on trying to connect
        raise
    return Services(settings, organizations, read_db)
