"""The HTTP server of `membership serve`: gunicorn's threaded worker, made to face slow clients and outages.

1. **A slow client costs a socket, not a thread.** gunicorn's gthread worker hands a connection to a
   thread as soon as a byte arrives, and the thread then blocks until the request's head is in: a client
   trickling its headers holds the thread as long as it likes. Here the worker's event loop reads each
   request without blocking and hands it to a thread only when its head (and a body of up to 64 KiB) is
   in. A request not whole within the request timeout is answered 408; a head over 32 KiB, 431. Threads
   read only the rest of larger or chunked bodies themselves, by the same deadline.
2. **gunicorn's own refusals are problem details** (400, 414, 431, ...), like every error of this API.
3. **A worker (re)started while the database is down waits for it** (a WARNING per retry) instead of
   failing to boot, which would stop gunicorn's master: an outage must not outlive itself.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import selectors
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import ThreadWorker

from api.errors import PROBLEM_TYPE
from membership.database import ConfigurationError
from projections.engine.outages import is_transient
from service.preflight import check_database
from service.settings import DEFAULT_REQUEST_TIMEOUT_S, Settings

log = logging.getLogger(__name__)
# gunicorn's, stated here as README documents them. keepalive: idle time between requests on one connection
# (a reverse proxy's upstream keepalive_timeout is shorter); timeout: a worker silent this long is restarted.
LIMITS = {"limit_request_line": 4094, "limit_request_fields": 100, "limit_request_field_size": 8190}
LIMITS |= {"keepalive": 5, "timeout": 30}
MAX_HEAD_BYTES = 32 * 1024  # request line and headers together, as nginx's default (4 x 8 KiB buffers)
MAX_BUFFERED_BODY_BYTES = 64 * 1024  # the API's body limit; bulk bodies (1 MiB) are read on by the thread
READ_CHUNK_BYTES = 16 * 1024
LINGER_S = 2.0  # a closed connection waits this long at most for the client to close too
BOOT_RETRY_FIRST_S, BOOT_RETRY_MAX_S = 0.25, 5.0
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*(?=\r\n)")
UNBUFFERED_BODY = re.compile(rb"\r\n(?:transfer-encoding|expect):")  # chunked; or a client waiting for 100

# Status -> (code, detail). Details are fixed: gunicorn's messages quote the client's bytes.
REFUSALS = {
    400: ("bad_request", "The request is not valid HTTP/1.1."),
    403: ("forbidden", "The request was refused."),
    408: ("request_timeout", "The request did not arrive in time; send it again, whole."),
    414: ("uri_too_long", "The request line (method, path and query) is too long."),
    417: ("expectation_failed", "Only 'Expect: 100-continue' is supported."),
    431: ("request_header_fields_too_large", "The request headers are too large (or too many)."),
    500: ("internal_error", "An unexpected error occurred."),
    501: ("not_implemented", "The request uses a transfer coding this server does not support."),
}


def problem_response(status: int) -> bytes:
    """A whole HTTP/1.1 response: RFC 9457 problem details, as `api.errors.problem` writes them."""
    code, detail = REFUSALS.get(status, ("http_error", "The request could not be served."))
    title = _title(status)
    problem = {"type": PROBLEM_TYPE + code.replace("_", "-"), "title": title, "status": status, "detail": detail}
    body = json.dumps({**problem, "code": code}).encode()
    head = (
        f"HTTP/1.1 {status} {title}\r\nContent-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n"
        "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, writing problem details instead of an HTML page.

    Why replace the writer rather than override `Worker.handle_error`: gunicorn's handle_error (the only
    caller) decides which exceptions are the client's and which status each gets (a dozen parse errors,
    more in each release), logs them, then calls this with the status. Overriding it would mean copying
    that mapping and falling behind it; replacing the writer changes only the bytes sent. The replacement
    is made in `MembershipWorker.init_process`, so only this server's worker processes have it.
    `reason` and `mesg` are ignored: gunicorn's message echoes the client's input.
    """
    util.write_nonblock(sock, problem_response(status_int))


@dataclass
class PendingRequest:
    """What a connection has sent of its next request while the event loop reads it."""

    data: bytearray
    deadline: float
    line_limit: int
    watched: bool = False  # registered with the poller
    size: int | None = None  # head + buffered body, once the head is in

    def whole(self) -> bool:
        """True once a thread can parse it without waiting for the client (or once it is sure to fail)."""
        if self.size is None:
            ends = [i + len(end) for end in (b"\r\n\r\n", b"\n\n") if (i := self.data.find(end)) >= 0]
            if not ends:  # an over-long request line: gunicorn refuses it (414) without reading on
                return len(self.data) > self.line_limit + 2 and self.data.find(b"\r\n", 0, self.line_limit + 2) < 0
            self.size = min(ends) + self._body_to_buffer(bytes(self.data[: min(ends)]).lower())
        return len(self.data) >= self.size

    def too_large(self) -> bool:
        return self.size is None and len(self.data) > MAX_HEAD_BYTES

    @staticmethod
    def _body_to_buffer(head: bytes) -> int:
        lengths = CONTENT_LENGTH.findall(head)
        if len(lengths) != 1 or UNBUFFERED_BODY.search(head) or int(lengths[0]) > MAX_BUFFERED_BODY_BYTES:
            return 0  # the thread reads it (gunicorn alone judges odd framing)
        return int(lengths[0])


class DeadlineUnreader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's socket reader, giving up at `deadline`: a stalled body frees its thread (the app sees a
    disconnected client and answers 400)."""

    deadline = math.inf

    def chunk(self, size_hint: int | None = None) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        before = self.sock.gettimeout()
        self.sock.settimeout(remaining)
        try:
            return super().chunk(size_hint)  # type: ignore[no-any-return]
        finally:
            self.sock.settimeout(before)


class MembershipWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, reading requests and closing connections in its event loop, refusing with problems,
    booting through outages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading: dict[Any, PendingRequest] = {}  # connection -> its request so far (in deadline order)
        self.closing: dict[Any, float] = {}  # connection -> when to stop waiting for the client to close
        cfg = self.cfg
        plain_http = not cfg.is_ssl and cfg.http2_cleartext == "off" and cfg.proxy_protocol == "off"
        self.reads_requests = plain_http and cfg.protocol == "http"  # else gunicorn's own reading, unchanged
        self.request_timeout_s = float(getattr(self.app, "request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S))

    def init_process(self) -> None:
        util.write_error = write_problem  # this worker process only (see write_problem)
        super().init_process()  # last: it runs the worker

    # -- 1. reading requests in the event loop ---------------------------------
    def enqueue_req(self, conn: Any) -> None:
        """Called by gunicorn on the event loop whenever a connection may send a request."""
        if not self.reads_requests:
            return super().enqueue_req(conn)
        already = conn.parser.unreader.take_buffered() if conn.parser is not None else b""  # pipelined
        deadline = time.monotonic() + self.request_timeout_s
        self.reading[conn] = PendingRequest(bytearray(already), deadline, self.cfg.limit_request_line)
        conn.sock.setblocking(False)
        self.receive(conn)

    def receive(self, conn: Any, _fileobj: object = None) -> None:
        pending = self.reading[conn]
        try:
            data: bytes | None = conn.sock.recv(READ_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":  # the client left before sending a whole request
            return self.drop(conn)
        pending.data += data or b""
        if pending.whole():
            return self.dispatch(conn)
        if pending.too_large():
            return self.refuse(conn, 431)
        if not pending.watched:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.receive, conn))
            pending.watched = True

    def dispatch(self, conn: Any) -> None:
        """Hand the request to a thread, its bytes already in the parser's buffer."""
        pending = self.reading.pop(conn)
        self.unwatch(conn)
        if not conn.initialized:
            conn.init()
            conn.parser.unreader = DeadlineUnreader(conn.sock)
        conn.parser.unreader.unread(bytes(pending.data))
        conn.parser.unreader.deadline = pending.deadline
        conn.data_ready = True
        super().enqueue_req(conn)

    def refuse(self, conn: Any, status: int) -> None:
        del self.reading[conn]
        self.unwatch(conn)
        with suppress(OSError):
            conn.sock.send(problem_response(status))
        self.linger(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """Serve one request in a thread. The client must take the answer within the request timeout too:
        one that never reads it frees the thread then (its connection is closed)."""
        conn.sock.settimeout(self.request_timeout_s)
        try:
            return bool(super().handle_request(req, conn))
        except TimeoutError:
            log.info("a client did not take its answer within %.0f s: connection closed", self.request_timeout_s)
            return False

    # -- closing in the event loop ---------------------------------------------
    def finish_request(self, conn: Any, fs: Any) -> None:
        """gunicorn closes a finished connection gracefully by waiting (up to 2 s) for the client's FIN in
        the event loop itself, which no other client is served meanwhile: here the wait does not block."""
        if self.reads_requests and not fs.cancelled() and fs.exception() is None and fs.result() is False:
            return self.linger(conn)
        super().finish_request(conn, fs)

    def linger(self, conn: Any) -> None:
        """Half-close, then read and drop what the client still sends until it closes too (RFC 9112 9.6:
        closing with unread bytes would reset the connection before the client reads the response)."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.drain, conn))
        except (OSError, KeyError, ValueError):
            return self.drop(conn)
        self.closing[conn] = time.monotonic() + LINGER_S

    def drain(self, conn: Any, _fileobj: object = None) -> None:
        try:
            if conn.sock.recv(READ_CHUNK_BYTES):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self.drop(conn)

    def murder_pending(self) -> None:
        """gunicorn's expiry round (each loop, and while stopping): late requests are answered 408."""
        super().murder_pending()
        now = time.monotonic()
        for conn, pending in list(self.reading.items()):
            if pending.deadline <= now and pending.data:
                self.refuse(conn, 408)
            elif pending.deadline <= now or (not self.alive and not pending.data):
                self.drop(conn)  # nothing asked, in time or while stopping
            elif self.alive:
                break  # the rest expire later
        for conn, deadline in list(self.closing.items()):
            if deadline > now:
                break
            self.drop(conn)

    def unwatch(self, conn: Any) -> None:
        with suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def drop(self, conn: Any) -> None:
        """Close now, and forget the connection."""
        self.reading.pop(conn, None)
        self.closing.pop(conn, None)
        self.unwatch(conn)
        self.nr_conns -= 1
        conn.close()

    # -- 3. booting through a database outage ----------------------------------
    def load_wsgi(self) -> None:
        """Build the app once the database answers; until then, wait and retry with backoff."""
        for delay in _backoff():
            try:
                check_database(self.app.settings.database)  # one connection, not pools a failed build would strand
            except ConfigurationError as error:
                problem = str(error)
            else:
                try:
                    return super().load_wsgi()
                except Exception as error:
                    if not is_transient(error):
                        raise
                    problem = f"{type(error).__name__}: {error}"
            log.warning("worker %d: the database does not answer (%s); building the app again in %.1f s",
                        os.getpid(), problem, delay)  # fmt: skip
            self.pause(delay)

    def pause(self, seconds: float) -> None:
        """Sleep, still telling the master this worker is alive; leave if told to stop."""
        until = time.monotonic() + seconds
        while self.alive and time.monotonic() < until:
            self.notify()
            time.sleep(min(0.2, max(until - time.monotonic(), 0)))
        if not self.alive:
            sys.exit(0)


def _backoff() -> Iterator[float]:
    delay = BOOT_RETRY_FIRST_S
    while True:
        yield delay
        delay = min(delay * 2, BOOT_RETRY_MAX_S)


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code; each worker builds its own app after the fork."""

    def __init__(
        self, settings: Settings, run_projections: bool, options: dict[str, Any], request_timeout_s: float
    ) -> None:
        self.settings = settings
        self.run_projections = run_projections
        self.request_timeout_s = request_timeout_s
        # The app writes its own structured access log (api.access); gunicorn's would repeat it.
        self.options = {**LIMITS, "worker_class": MembershipWorker, "control_socket_disable": True, **options}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from service.bootstrap import build_app

        return build_app(self.settings, run_projections=self.run_projections)
