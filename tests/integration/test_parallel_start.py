"""Many set-ups at once on an empty PostgreSQL database all succeed: tables are made once.

Before, concurrent CREATE TABLE IF NOT EXISTS collided in PostgreSQL's catalogs
("tuple concurrently updated", duplicate pg_type rows) about one start in four,
and gunicorn's master exited "Worker failed to boot". Every process (server, each
of its API processes, worker) sets up through `build_services`; here eight of them
run at once, each on connections of its own as separate processes would, without
paying eight interpreters' start-up. `membership serve` and `membership worker`
starting as processes are tested in test_server_process and test_kill_and_resume.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from uuid import uuid4

import psycopg
import pytest

from service.bootstrap import Services, build_services
from service.settings import Settings

# Eight set-ups at once per round (the collision hit about one start in four);
# MEMBERSHIP_PARALLEL_START_ROUNDS=20 searches harder.
ROUNDS = int(os.environ.get("MEMBERSHIP_PARALLEL_START_ROUNDS", "3"))
SET_UPS = 8


def empty_schema(database_url: str) -> str:
    schema = f"start_{uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{database_url}?schema={schema}"


def all_at_once(count: int, set_up: Callable[[], Services]) -> list[BaseException]:
    """Run `set_up` in `count` threads released together; the errors they raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []
    built: list[Services] = []

    def run() -> None:
        start.wait()
        try:
            built.append(set_up())
        except BaseException as error:  # noqa: BLE001 (reported by the test)
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for services in built:
        services.close()
    return errors


@pytest.mark.postgres
def test_set_ups_started_together_on_an_empty_database_all_succeed(
    postgres_database_url: str, settings_for: Callable[..., Settings]
) -> None:
    for _ in range(ROUNDS):
        settings = settings_for(empty_schema(postgres_database_url))
        assert all_at_once(SET_UPS, lambda: build_services(settings)) == []  # noqa: B023 (used within the round)
