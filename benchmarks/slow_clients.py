"""Slow-client benchmark: do connections that trickle their requests slow everyone else down?

    .venv/bin/python -m benchmarks.slow_clients                    # N = 1, 4, 16, 64 slow connections
    .venv/bin/python -m benchmarks.slow_clients --slow 4,16 --seconds 5 -- --threads 4

Starts `membership serve` (one process, embedded SQLite in a temporary directory; arguments
after `--` go to it), then measures the latency of ordinary requests (`GET /api/health`, a new
connection each, one after another) for a while with no slow client (the baseline), then with
N slow connections open, then with none again. A slow connection sends its request one byte a
second; when the server cuts it (408 after the request timeout), it connects again at once, so
N stay open all along. Printed: median, p95 and max latency, failures (no answer within
--request-timeout), and the ratios to the baseline of the median and p95.

Figures only: nothing here asserts on time. The exit code is 0 unless something fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

from tests.servers import serving

SLOW_REQUEST = b"GET /api/health HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"s" * 4000 + b"\r\n\r\n"


@dataclass
class Phase:
    label: str
    slow: int
    latencies_ms: list[float]
    failures: int
    reconnects: int

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class SlowClients:
    """N connections sending one byte a second each, reconnecting whenever the server lets one go."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count, self.reconnects = port, count, 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        sent: dict[socket.socket, int] = {}
        for _ in range(self.count):
            self._connect(selector, sent)
        while not self.stopped.wait(1.0):
            answered = {key.fileobj for key, _ in selector.select(0)}  # a 408, or the server closing
            for sock in list(sent):
                try:
                    if sock in answered:
                        raise ConnectionError("answered")
                    sock.send(SLOW_REQUEST[sent[sock] : sent[sock] + 1])
                    sent[sock] = (sent[sock] + 1) % len(SLOW_REQUEST)
                except OSError:
                    selector.unregister(sock)
                    del sent[sock]
                    sock.close()
                    self.reconnects += 1
                    self._connect(selector, sent)
        for sock in sent:
            sock.close()

    def _connect(self, selector: selectors.BaseSelector, sent: dict[socket.socket, int]) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        selector.register(sock, selectors.EVENT_READ)
        sent[sock] = 0

    @contextmanager
    def running(self) -> Iterator[SlowClients]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            self.thread.join()


def measure(base: str, label: str, slow: int, seconds: float, timeout: float) -> Phase:
    port = int(base.rsplit(":", 1)[1])
    clients = SlowClients(port, slow)
    latencies, failures = [], 0
    with clients.running():
        time.sleep(1.5 if slow else 0)  # every slow connection open and sending
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=timeout) as response:  # noqa: S310
                    response.read()
                latencies.append((time.perf_counter() - started) * 1000)
            except OSError:
                failures += 1
    return Phase(label, slow, latencies, failures, clients.reconnects)


def report(phases: list[Phase]) -> None:
    baseline = phases[0]
    base_median, base_p95 = statistics.median(baseline.latencies_ms), baseline.quantile(0.95)
    print(f"\n{'phase':<16} {'slow':>5} {'requests':>8} {'failed':>6} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}"
          f" {'median x':>9} {'p95 x':>7} {'slow reconnects':>15}")  # fmt: skip
    for phase in phases:
        median = statistics.median(phase.latencies_ms) if phase.latencies_ms else float("nan")
        p95 = phase.quantile(0.95)
        print(
            f"{phase.label:<16} {phase.slow:>5} {len(phase.latencies_ms):>8} {phase.failures:>6} {median:>10.2f}"
            f" {p95:>8.2f} {max(phase.latencies_ms, default=float('nan')):>8.2f} {median / base_median:>9.2f}"
            f" {p95 / base_p95:>7.2f} {phase.reconnects:>15}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", default="1,4,16,64", help="Numbers of slow connections, comma-separated.")
    parser.add_argument("--seconds", type=float, default=12.0, help="Measuring time per phase (default 12: more "
                        "than the server's 10 s request timeout, so cut slow clients reconnect meanwhile).")  # fmt: skip
    parser.add_argument("--request-timeout", type=float, default=15.0, help="Client-side limit per request.")
    parser.add_argument("serve_args", nargs="*", help="Extra arguments for `membership serve` (after --).")
    args = parser.parse_args()
    counts = [int(n) for n in args.slow.split(",")]
    print(f"python {platform.python_version()}, gunicorn {package_version('gunicorn')}, {os.cpu_count()} CPUs;"
          f" membership serve {' '.join(args.serve_args) or '(defaults)'} on SQLite")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as directory:
        env = {"MEMBERSHIP_DATABASE_URL": f"sqlite:///{directory}/membership.db", "MEMBERSHIP_SECRET_KEY": "b" * 40,
               "MEMBERSHIP_JWT_SECRET": "j" * 40}  # fmt: skip
        stderr = Path(directory) / "server.stderr"
        with serving(env, Path(directory), *args.serve_args, stderr=stderr) as (base, _):
            measure(base, "warm-up", 0, 2.0, args.request_timeout)
            phases = [measure(base, "baseline", 0, args.seconds, args.request_timeout)]
            for count in counts:
                phases.append(measure(base, f"{count} slow", count, args.seconds, args.request_timeout))
                print(f"  measured with {count} slow connections", file=sys.stderr)
            phases.append(measure(base, "baseline again", 0, args.seconds, args.request_timeout))
    report(phases)


if __name__ == "__main__":
    main()
