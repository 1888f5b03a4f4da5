"""Many processes starting at once on an empty PostgreSQL database all come up: tables are made once.

Before, concurrent CREATE TABLE IF NOT EXISTS collided in PostgreSQL's catalogs
("tuple concurrently updated", duplicate pg_type rows) about one start in four,
and gunicorn's master exited "Worker failed to boot".
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.servers import MEMBERSHIP, free_port, wait_until_up

# One round of eight processes setting up at once (the collision hit about one start in four); more rounds
# cost ~6 s each: MEMBERSHIP_PARALLEL_START_ROUNDS=20 searches harder.
ROUNDS = int(os.environ.get("MEMBERSHIP_PARALLEL_START_ROUNDS", "1"))
WORKERS = 4  # `membership worker` processes, beside a server with three API processes and its own worker duties


def empty_schema(database_url: str) -> str:
    schema = f"start_{uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{database_url}?schema={schema}"


@pytest.mark.postgres
@pytest.mark.slow
def test_servers_and_workers_started_together_on_an_empty_database_all_come_up(
    postgres_database_url: str, tmp_path: Path
) -> None:
    for round_ in range(ROUNDS):
        env = {
            **os.environ,
            "MEMBERSHIP_DATABASE_URL": empty_schema(postgres_database_url),
            "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
            "MEMBERSHIP_JWT_SECRET": TEST_SECRET_KEY,
            "MEMBERSHIP_VAR_DIR": str(tmp_path / f"var{round_}"),
        }
        port = free_port()
        commands = [[MEMBERSHIP, "worker"] for _ in range(WORKERS)]
        commands.append([MEMBERSHIP, "serve", "--port", str(port), "--workers", "3", "--with-worker"])
        logs = [tmp_path / f"round{round_}-{n}.log" for n in range(len(commands))]
        processes = []
        for command, log in zip(commands, logs, strict=True):
            with log.open("wb") as output:
                processes.append(subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT))
        try:
            try:
                wait_until_up(f"http://127.0.0.1:{port}", processes[-1], timeout=60)
            except AssertionError:
                raise AssertionError("\n".join(f"{log.name}:\n{log.read_text()[-2000:]}" for log in logs)) from None
            time.sleep(1.0)  # the workers are past their set-up too
            for process, log in zip(processes, logs, strict=True):
                assert process.poll() is None, log.read_text()
            for log in logs:
                text = log.read_text()
                assert "concurrently updated" not in text and "Worker failed to boot" not in text, text
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
