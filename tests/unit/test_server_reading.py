"""When the server's event loop hands a request to a thread, how it refuses one, and how the
connection pools are sized for the threads (api/server.py, membership/settings.py)."""

from __future__ import annotations

import json

import pytest

from membership.database import BACKGROUND_THREADS, ConfigurationError, Database
from service.server import MAX_HEAD_BYTES, PendingRequest, problem_response

LINE_LIMIT = 4094


def pending(data: bytes) -> PendingRequest:
    return PendingRequest(bytearray(data), deadline=0.0, line_limit=LINE_LIMIT)


@pytest.mark.parametrize(
    ("data", "whole"),
    [
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\n", False),
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"POST /api/x HTTP/1.1\r\nContent-Length: 5\r\n\r\n{}", False),  # the body is read here too
        (b'POST /api/x HTTP/1.1\r\nContent-Length: 5\r\n\r\n{"a"}', True),
        (b"POST /api/x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", True),  # waits to be asked
        (b"POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", True),  # the thread reads chunks
        (b"POST /api/x HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", True),  # over 64 KiB: the thread reads on
        (b"POST /api/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", True),  # gunicorn refuses
        (b"GET / HTTP/1.1\nHost: x\n\n", True),  # bare LF: gunicorn refuses it
        (b"GET /" + b"a" * LINE_LIMIT, True),  # the request line is already too long: gunicorn answers 414
    ],
)
def test_a_request_goes_to_a_thread_once_its_head_and_small_body_are_in(data: bytes, whole: bool) -> None:
    assert pending(data).whole() is whole


def test_a_head_that_grows_past_32_kib_without_ending_is_too_large() -> None:
    request = pending(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEAD_BYTES // 8))
    assert not request.whole() and request.too_large()
    body_in_progress = pending(b"POST / HTTP/1.1\r\nContent-Length: 60000\r\n\r\n" + b"x" * 40000)
    assert not body_in_progress.whole() and not body_in_progress.too_large()


def test_refusals_are_small_problem_details() -> None:
    head, _, body = problem_response(431).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Content-Type: application/problem+json" in head and b"Connection: close" in head
    assert json.loads(body) == {
        "type": "https://ocore.dev/problems/request-header-fields-too-large",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": "The request headers are too large (or too many).",
        "code": "request_header_fields_too_large",
    }


def test_every_pool_has_a_connection_for_each_request_and_background_thread() -> None:
    database = Database.from_url("postgresql://app@db/members").serving(threads=16)
    env = database.eventsourcing_env()
    assert int(env["POSTGRES_POOL_SIZE"]) + int(env["POSTGRES_MAX_OVERFLOW"]) == 16 + BACKGROUND_THREADS
    assert database.connections == 16 + BACKGROUND_THREADS  # the read models' pool (ReadDatabase)


def test_sqlite_refuses_more_threads_than_its_pool_has_connections() -> None:
    database = Database.from_url("sqlite:///var/m.db")
    assert database.serving(threads=11).request_threads == 11
    with pytest.raises(ConfigurationError, match="at most 11 threads on SQLite"):
        database.serving(threads=12)
