"""`ocore job ...`: follow and cancel bulk jobs."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import click

from ocore import output
from ocore.cli import ALL, LIMIT, api, global_options, main, paged, show
from ocore.client import Client, WatchInterruptedError
from ocore.output import watch_job


@main.group()
def job() -> None:
    """Bulk-operation jobs."""


@job.command("show")
@click.argument("job_id", type=click.UUID)
@click.option("--watch", is_flag=True, help="Draw a progress bar until the job ends; exit 1 unless it succeeded.")
@global_options
def job_show(job_id: UUID, watch: bool) -> None:
    """A job's progress, counts and failed items."""
    client = api()
    data = client.get(f"/api/jobs/{job_id}")
    if watch:
        finish_watch(client, data)
    else:
        show(data, output.job)


@job.command("list")
@LIMIT
@ALL
@global_options
def job_list(limit: int | None, follow: bool) -> None:
    """The organization's jobs, newest first."""
    show(paged("/api/jobs", "jobs", follow, limit=limit), output.lister("jobs", output.JOBS))


@job.command("cancel")
@click.argument("job_id", type=click.UUID)
@global_options
def job_cancel(job_id: UUID) -> None:
    """Stop a running job after its current batch."""
    show(api().request("POST", f"/api/jobs/{job_id}/cancel"), output.job)


def finish_watch(client: Client, job: dict[str, Any]) -> None:
    """Watch a job to its end, print it, and exit 1 unless every item succeeded."""
    try:
        job = watch_job(lambda: client.get(f"/api/jobs/{job['id']}"), job)
    except KeyboardInterrupt:
        raise WatchInterruptedError(
            f"stopped watching; job {job['id']} goes on (ocore job show {job['id']} --watch)"
        ) from None
    show(job, output.job)
    if job["status"] != "succeeded":
        raise click.exceptions.Exit(1)
