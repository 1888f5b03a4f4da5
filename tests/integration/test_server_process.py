"""`membership serve` as a real process: it starts on both stores, and a bad database
URL stops it at once with one clear line instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.servers import MEMBERSHIP, free_port, serving


def run_membership(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MEMBERSHIP, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def server(store: str, tmp_path: Path) -> Iterator[str]:
    env = {
        "MEMBERSHIP_DATABASE_URL": store,
        "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
        "MEMBERSHIP_JWT_SECRET": TEST_SECRET_KEY,
    }
    with serving(env, tmp_path) as (base, _):
        yield base


def test_the_server_answers_health_on_each_store(server: str) -> None:
    with urllib.request.urlopen(f"{server}/api/health", timeout=5) as response:  # noqa: S310
        assert response.status == 200
        assert b'"database":"ok"' in response.read()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://db/x", "unsupported scheme 'mysql'"),
        (
            "postgresql://nobody:pw@127.0.0.1:1/x",
            "cannot connect to PostgreSQL at 'postgresql://nobody:***@127.0.0.1:1/x'",
        ),
        ("sqlite:////proc/no-such-dir/m.db", "cannot"),
    ],
)
def test_a_bad_database_url_fails_at_start_up_with_one_line(url: str, expected: str, tmp_path: Path) -> None:
    result = run_membership(
        "serve",
        "--port",
        str(free_port()),
        cwd=tmp_path,
        MEMBERSHIP_DATABASE_URL=url,
        MEMBERSHIP_SECRET_KEY=TEST_SECRET_KEY,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and "pw@" not in result.stderr


@pytest.mark.postgres
def test_serving_on_postgresql_without_a_token_key_fails_at_start_up(
    postgres_database_url: str, tmp_path: Path
) -> None:
    result = run_membership(
        "serve", "--port", str(free_port()), cwd=tmp_path,
        MEMBERSHIP_DATABASE_URL=postgres_database_url, MEMBERSHIP_SECRET_KEY=TEST_SECRET_KEY,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "membership: configuration error: set MEMBERSHIP_OIDC_ISSUER (tokens of your identity provider), "
        "MEMBERSHIP_JWT_JWKS_URL, MEMBERSHIP_JWT_SECRET (HS256) or MEMBERSHIP_JWT_PUBLIC_KEY_FILE (RS256)"
    )
