"""Builds the service's parts from settings, in one place for the server, worker and tools."""

from __future__ import annotations

from dataclasses import dataclass

from membership import Organizations
from membership.settings import Settings
from projections import store
from projections.runner import ProjectionRunner
from projections.sql import ReadDatabase


@dataclass
class Services:
    """The write side, the read models, and (when this process runs them) the projection runner."""

    settings: Settings
    organizations: Organizations
    read_db: ReadDatabase
    runner: ProjectionRunner | None = None

    def start_projections(self) -> ProjectionRunner:
        self.runner = ProjectionRunner(self.organizations, self.read_db)
        self.runner.start()
        return self.runner

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        self.read_db.close()
        self.organizations.close()


def build_services(settings: Settings) -> Services:
    """Open the stores and make sure every table exists."""
    organizations = Organizations.from_settings(settings)
    read_db = ReadDatabase(settings.database)
    store.setup(read_db)
    return Services(settings, organizations, read_db)
