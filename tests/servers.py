"""Real processes for tests: `membership serve` on a free port (start, wait until it answers, stop),
raw HTTP no client library would send, and a PostgreSQL server of a test's own that it may stop."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MEMBERSHIP = str(Path(sys.executable).parent / "membership")
PG_SCRIPT = str(Path(__file__).resolve().parent.parent / "scripts" / "pg")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(base: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            urllib.request.urlopen(f"{base}/api/health", timeout=1)  # noqa: S310 (our own loopback server)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the server did not answer within {timeout} s")


@contextmanager
def serving(
    env: Mapping[str, str], cwd: Path, *args: str, stdout: Path | None = None, stderr: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`membership serve` on a free port with `env` added; yields its base URL and process, then stops it."""
    port = free_port()
    with ExitStack() as files:
        out = files.enter_context(stdout.open("wb")) if stdout else None
        err = files.enter_context(stderr.open("wb")) if stderr else None
        process = subprocess.Popen(
            [MEMBERSHIP, "serve", "--port", str(port), *args],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=out,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, process)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def worker_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """The gunicorn workers of a `membership serve` process: its child processes (Linux)."""
    return [int(pid) for pid in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def raw_request(base: str, payload: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send `payload` as it is; (status, headers, body) of the answer, read until the server closes."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(payload)
        return parse_response(read_to_end(sock))


def read_to_end(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def parse_response(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of one test's own (`scripts/pg start DIR --fast`), which it may stop and restart."""

    directory: Path
    url: str

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        # `restart` of a stopped server starts it with the options it last ran with (port, socket directory).
        self._pg_ctl("-l", str(self.directory / "server.log"), "-w", "restart")

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl = Path((self.directory / "bindir").read_text().strip()) / "pg_ctl"
        command = [str(pg_ctl), "-D", str(self.directory / "data"), *args]
        if os.getuid() == 0:  # as scripts/pg: PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Start a throwaway PostgreSQL server; stop and remove it at the end.

    Its directory is not under pytest's tmp_path: every pytest run makes /tmp/pytest-of-USER private
    again (0700), which would lock out the `postgres` user that the server runs as under root."""
    directory = Path(tempfile.mkdtemp(prefix="membership-pg-"))
    try:
        started = subprocess.run(
            [PG_SCRIPT, "start", str(directory), "--fast"], capture_output=True, text=True, timeout=120
        )
        assert started.returncode == 0, f"scripts/pg start failed: {started.stderr}"
        yield PrivatePostgres(directory, started.stdout.strip())
    finally:
        subprocess.run([PG_SCRIPT, "stop", str(directory)], check=False, capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
