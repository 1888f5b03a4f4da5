"""Real `membership` processes for tests: a free port, start, wait until it answers, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

MEMBERSHIP = str(Path(sys.executable).parent / "membership")


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
