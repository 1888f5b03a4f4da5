"""A worker that gunicorn (re)starts while PostgreSQL is down waits for the database, instead of
failing to boot, which would stop the whole server: an outage must not outlive itself."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.servers import private_postgres, serving, wait_until, wait_until_up, worker_pids


@pytest.mark.postgres
@pytest.mark.slow
def test_a_worker_restarted_during_a_postgresql_outage_waits_and_serves_once_it_is_back(tmp_path: Path) -> None:
    with private_postgres() as postgres:
        env = {
            "MEMBERSHIP_DATABASE_URL": postgres.url,
            "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
            "MEMBERSHIP_JWT_SECRET": TEST_SECRET_KEY,
        }
        log = tmp_path / "server.stderr"
        with serving(env, tmp_path, "--workers", "1", stderr=log) as (base, server):
            [worker] = worker_pids(server)
            # The database goes away; then the worker dies (OOM killer, a deploy...) and gunicorn starts another.
            postgres.stop()
            os.kill(worker, signal.SIGKILL)
            waiting = re.compile(r"WARNING service\.server worker (\d+): the database does not answer")
            wait_until(lambda: waiting.search(log.read_text()) is not None, 15, "the new worker's warning")
            assert server.poll() is None, "the master stopped"
            assert int(waiting.findall(log.read_text())[0]) != worker

            postgres.start()
            wait_until_up(base, server, timeout=20)
            with urllib.request.urlopen(f"{base}/api/health", timeout=5) as response:  # noqa: S310 (loopback)
                assert response.status == 200 and json.loads(response.read())["database"] == "ok"
            assert worker not in worker_pids(server)
    assert "Worker failed to boot" not in log.read_text()
