"""A real `membership serve` process facing clients that are slow, stalled or malformed.

Slow clients must not hold the threads that answer everyone else, and whatever gunicorn itself
refuses (a request line or headers too large, bytes that are not HTTP, a request not sent in
time) is answered with problem details, like every other error of the API.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.e2e.conftest import JWT_SECRET, ApiClient
from tests.servers import parse_response, raw_request, read_to_end, serving

THREADS = 2  # fewer than the slow clients below: they must not need a thread each
REQUEST_TIMEOUT_S = 1.5
ANSWERED_WITHIN_S = 5.0  # generous: these tests prove answers come, not how fast
SLOW_CLIENTS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("server")
    env = {
        "MEMBERSHIP_DATABASE_URL": f"sqlite:///{directory / 'membership.db'}",
        "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
        "MEMBERSHIP_JWT_SECRET": JWT_SECRET,
    }
    args = ("--threads", str(THREADS), "--request-timeout", str(REQUEST_TIMEOUT_S))
    with serving(env, directory, *args, stderr=Path(directory / "server.stderr")) as (base, _):
        yield base


def health(base: str) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(f"{base}/api/health", timeout=10) as response:  # noqa: S310 (loopback)
        return response.status, time.monotonic() - started


def assert_problem(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got, headers, body = answer
    problem = json.loads(body)
    assert (got, headers["Content-Type"], headers["Connection"]) == (status, "application/problem+json", "close")
    assert problem["status"] == status and problem["code"] == code and problem["detail"]
    assert problem["type"] == "https://ocore.dev/problems/" + code.replace("_", "-")
    assert set(problem) == {"type", "title", "status", "detail", "code"} and len(body) < 400


def trickle(base: str, answers: list[bytes]) -> None:
    """Send a request a byte every half second until the server answers; keep its answer."""
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for byte in b"GET /api/health HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"p" * 100 + b"\r\n\r\n":
            if select.select([sock], [], [], 0)[0]:
                break  # answered (408) before the request was whole
            sock.send(bytes([byte]))
            time.sleep(0.5)  # slower than the request timeout allows for the whole request
        answers.append(read_to_end(sock))


def test_slow_clients_trickling_their_headers_leave_the_server_answering_and_get_408(server: str) -> None:
    answers: list[bytes] = []
    slow = [threading.Thread(target=trickle, args=(server, answers)) for _ in range(SLOW_CLIENTS)]
    for client in slow:
        client.start()
    time.sleep(0.5)
    while any(client.is_alive() for client in slow):
        status, took = health(server)
        assert status == 200 and took < ANSWERED_WITHIN_S
        time.sleep(0.2)
    assert len(answers) == SLOW_CLIENTS
    for answer in answers:
        assert_problem(parse_response(answer), 408, "request_timeout")


def test_clients_that_never_close_their_connection_do_not_stall_the_others(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    with ExitStack() as stack:
        for _ in range(8):  # each answered, then never read nor closed
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: idle\r\nConnection: close\r\n\r\n")
        for _ in range(5):
            status, took = health(server)
            assert status == 200 and took < ANSWERED_WITHIN_S


def test_clients_that_never_read_their_answers_hold_a_thread_for_the_request_timeout_at_most(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    with ExitStack() as stack:
        for _ in range(THREADS):  # megabytes of answers asked for, none read
            sock = stack.enter_context(socket.socket())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /api/openapi.json HTTP/1.1\r\nHost: deaf\r\n\r\n" * 400)
        time.sleep(1)  # the answers fill the sockets' buffers, and the threads wait to write more
        for _ in range(3):
            status, took = health(server)
            assert status == 200 and took < REQUEST_TIMEOUT_S + ANSWERED_WITHIN_S


def test_an_over_long_request_line_is_answered_414_with_a_problem(server: str) -> None:
    answer = raw_request(server, b"GET /api/health?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_problem(answer, 414, "uri_too_long")


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"b" * 9000 + b"\r\n\r\n",  # one field over 8 KiB
        b"".join(b"X-Field-%d: x\r\n" % n for n in range(101)) + b"\r\n",  # over 100 fields
        b"".join(b"X-Part-%d: %s\r\n" % (n, b"c" * 4000) for n in range(10)),  # 40 KiB and never ending
    ],
    ids=["field-too-large", "too-many-fields", "head-over-32KiB"],
)
def test_over_large_headers_are_answered_431_with_a_problem(server: str, headers: bytes) -> None:
    answer = raw_request(server, b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + headers)
    assert_problem(answer, 431, "request_header_fields_too_large")


@pytest.mark.parametrize(
    "request_bytes", [b"NOT HTTP AT ALL\r\n\r\n", b"GET /<script>alert(1)</script> HTTP/9.9\r\n\r\n"]
)
def test_bytes_that_are_not_http_are_answered_400_with_a_problem_that_does_not_echo_them(
    server: str, request_bytes: bytes
) -> None:
    answer = raw_request(server, request_bytes)
    assert_problem(answer, 400, "bad_request")
    assert b"script" not in answer[2] and b"NOT HTTP" not in answer[2]


def test_a_body_that_stops_arriving_is_answered_408_with_a_problem(server: str) -> None:
    started = time.monotonic()
    answer = raw_request(
        server, b"POST /api/organizations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{\"name\": ",
    )  # fmt: skip
    assert_problem(answer, 408, "request_timeout")
    assert time.monotonic() - started < REQUEST_TIMEOUT_S + ANSWERED_WITHIN_S


def test_concurrent_requests_on_the_threads_of_one_process_all_succeed(server: str) -> None:
    def create_and_list(n: int) -> tuple[int, int]:
        token = ApiClient.token(ApiClient.user(f"owner{n}"))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = json.dumps({"name": f"Team {n}"}).encode()
        create = urllib.request.Request(f"{server}/api/organizations", body, headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(create, timeout=30) as response:  # noqa: S310
            created, org = response.status, json.loads(response.read())
        listing = urllib.request.Request(f"{server}/api/members", headers={**headers, "X-Organization-Id": org["id"]})  # noqa: S310
        with urllib.request.urlopen(listing, timeout=30) as response:  # noqa: S310
            return created, json.loads(response.read())["total"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(create_and_list, range(12)))
    assert results == [(201, 1)] * 12
