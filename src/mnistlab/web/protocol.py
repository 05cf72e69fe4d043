"""Connections with limits: uvicorn's HTTP/1.1 protocol with read timeouts, a connection cap and JSON refusals.

uvicorn has no timeout for a request in transit (its keep-alive timer runs
only between requests, and every byte received cancels it), and answers
malformed HTTP itself in plain text. ``GuardedProtocol`` is its h11 protocol
with what ``mnistlab serve`` needs on top, set by ``ConnectionLimits``:

- a request head must arrive within ``read_timeout`` seconds of the
  connection opening (or of its first byte, on a kept-alive connection);
  otherwise 408 and close (a connection that sent nothing is closed quietly);
- a body may pause at most ``read_timeout`` seconds, and must average
  ``min_upload_rate`` bytes/s after its first ``read_timeout`` seconds, so a
  client trickling one byte a second is let go too; 408 and close. Time the
  server itself is behind (it stopped reading) does not count;
- the rest of a body the application refused early (413 from its declared
  length) is read and dropped within the same limits, up to ``DISCARD_BYTES``,
  so the client can read its answer; past that the connection is closed;
- a request arriving while more than ``max_connections`` connections are
  open first closes connections that hold no request (just opened and
  silent, or kept alive between requests); if more than ``max_connections``
  still hold one, it is answered 503 (JSON, ``Retry-After``) and its
  connection closed; ``/api/health`` is answered all the same (``ALWAYS_ANSWERED``);
- a client that goes away before its body is complete is one log line; a request whose client went away
  unanswered is cancelled, and the reading queued for it with it, so work for nobody is not done;
- a request still unanswered when a stopping server's grace for those in flight is out is answered 503
  (JSON, ``Retry-After``), not with uvicorn's plain-text 500 and a traceback;
- a request head (request line and headers) over ``MAX_HEAD_BYTES`` is answered 431 and closed before it
  is parsed, however its bytes arrived (``HeadLimitedConnection``);
- malformed HTTP gets the API's JSON error shape instead of plain text;
- a request target in absolute form (``GET http://host/path``) is served as the path it names; an answer given
  before a body held back for "Expect: 100-continue" closes the connection (``rewrites``).

``server_config`` builds the uvicorn ``Config`` that serves an app this way
(``protocol_for`` the protocol class alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import h11
import uvicorn
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE, H11Protocol

from mnistlab.errors import ParameterError
from mnistlab.web.guard import security_headers
from mnistlab.web.rewrites import closing_unless_continued, origin_form

__all__ = [
    "ConnectionLimits",
    "GuardedProtocol",
    "HeadLimitedConnection",
    "protocol_for",
    "server_config",
    "raw_response",
    "stalled_body_detail",
    "ALWAYS_ANSWERED",
    "DISCARD_BYTES",
    "MAX_HEAD_BYTES",
]

# The most of a refused body read and dropped so that its client sees the answer, not a reset.
DISCARD_BYTES = 64 * 2**20
# The most bytes a request head may take, its ending blank line included: h11's limit for a head still
# arriving (16 KiB), held here for a complete one too.
MAX_HEAD_BYTES = DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
# Where h11 ends a head: a line feed, maybe a carriage return, a line feed.
_HEAD_END = re.compile(rb"\n\r?\n")


# Answered over the connection cap too: the liveness answer (no work, no model). A busy server is alive, and a
# Kubernetes liveness probe refused 503 under load would have the busy pod restarted, its load thrown on the rest.
ALWAYS_ANSWERED = "/api/health"


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a request may take to arrive, and how many connections may be open at once."""

    read_timeout: float = 10.0  # seconds for a request head; the longest pause in a body
    min_upload_rate: float = 1024.0  # bytes/s a body must average once read_timeout has passed
    max_connections: int = 100  # open connections; a request on one more is answered 503

    def __post_init__(self) -> None:
        for name in ("read_timeout", "min_upload_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ParameterError(name, f"{{param}} must be a positive number, got {value!r}.")
        n = self.max_connections
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ParameterError("max_connections", f"{{param}} must be a whole number of at least 1, got {n!r}.")


def stalled_body_detail(limits: ConnectionLimits) -> str:
    """The 408's sentence for a body that paused too long or came too slowly."""
    return (
        f"The request body did not arrive in time (pauses of at most {limits.read_timeout:g} s, "
        f"{limits.min_upload_rate:g} bytes/s at least); send it again."
    )


def raw_response(status: int, detail: str, *, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 response ``{"detail": detail}`` that closes the connection, as bytes (``retry_after``:
    seconds, for a 503 that will pass).

    For answers the protocol gives before (or instead of) the application: no
    request was parsed, so the JSON API's headers apply.
    """
    body = json.dumps({"detail": detail}).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode("ascii"),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        b"cache-control: no-cache",  # as every answer of the app (guard)
        *([b"retry-after: %d" % retry_after] if retry_after is not None else []),
        *(name + b": " + value for name, value in security_headers("/api", "application/json")),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class HeadLimitedConnection(h11.Connection):
    """h11's server side, refusing a request head over ``MAX_HEAD_BYTES`` unparsed, however its bytes arrived.

    h11 refuses a head still incomplete once it holds more than its limit, but parses a complete head of
    any size it holds: one that came in one read (asyncio reads up to 256 KiB), one whose last piece took
    it past the limit, one pipelined behind another request. Parsing is the cost to bound (250 KiB of
    short headers is 73 CPU-ms of h11, 60 requests' worth), so when more than the limit waits before a
    head, the head must end within the limit, or it is refused before h11 parses it.

    ``refused_with``: the status h11 suggests for the last error it raised (431: a head too long).
    """

    def __init__(self) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.refused_with: int | None = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            # h11's own buffer (private, the head tests catch a rename): its length is all an ordinary head pays.
            if self.their_state is h11.IDLE and len(self._receive_buffer) > MAX_HEAD_BYTES:
                self._refuse_unless_the_head_ends_in_time()
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refused_with = exc.error_status_hint
            raise

    def _refuse_unless_the_head_ends_in_time(self) -> None:
        # Past 16 KiB before a head: an upload's first read (its head ends early: a short search) or a
        # head too long (a search of 16 KiB). The copy of the buffer is paid only here.
        if _HEAD_END.search(self.trailing_data[0], 0, MAX_HEAD_BYTES) is None:
            raise h11.RemoteProtocolError("Request head too long", error_status_hint=431)


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with read timeouts, a connection cap and JSON refusals (module docstring)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    conn: HeadLimitedConnection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = HeadLimitedConnection()
        self._application = self.app
        self.app = self._app_unless_busy
        self._timer: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # "head" or "body" while one is being read; None otherwise
        self._since = self._last = 0.0  # loop time the phase began, and its last bytes arrived
        self._received = 0  # bytes received in this phase
        self._ended_by_us = False
        self._request_task: asyncio.Task | None = None  # the application's task for the request in flight
        self._client_left = False  # the client went away with its request unanswered: its task was cancelled

    # Reading, phase by phase. h11's state for the client says what is being read after each chunk.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter("head")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return self._leave()
        state = self.conn.their_state
        if state is h11.IDLE:  # waiting for a request head (bytes of it may be buffered)
            if self._phase != "head":
                self._enter("head")
        elif state is h11.SEND_BODY:
            if self._phase != "body":  # this chunk ended the head; what of it was body is in the cycle
                self._enter("body")
                self._received = len(self.cycle.body) if self.cycle is not None else 0
            else:
                self._received += len(data)
            self._last = self.loop.time()
            if self.conn.our_state in (h11.DONE, h11.MUST_CLOSE) and self._received > DISCARD_BYTES:
                self._end()  # answered already; not worth reading more of the body
        else:  # the request is in; the application has it
            self._leave()

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        cycle = self.cycle
        if self.conn.their_state is h11.SEND_BODY and not self._ended_by_us and cycle and not cycle.response_started:
            declared = dict(self.headers or []).get(b"content-length", b"?").decode("latin-1")
            self.logger.info(
                '%s - "%s %s" client went away after %d of %s body bytes',
                self._peer(),
                cycle.scope["method"],
                cycle.scope["path"],
                self._received,
                declared,
            )
        if self._request_task is not None and not self._ended_by_us and cycle and not cycle.response_started:
            self._client_left = True  # nobody to answer: the request's work (a reading thread's, queued) is dropped
            self._request_task.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP (uvicorn has logged it): the API's JSON error shape, not uvicorn's plain text; a head
        over ``MAX_HEAD_BYTES`` is 431, not a malformed one; a transfer coding h11 does not read is said to be one
        (400, as every refusal of a request is a 4xx, not the 501 h11 suggests)."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):  # its answer has begun: nothing more to say
            return self._end()
        if self.conn.refused_with == 431:
            kib = MAX_HEAD_BYTES // 1024
            return self._refuse(
                431, f"The request head is over {kib} KiB (a URL or headers that long); send a shorter one."
            )
        if self.conn.refused_with == 501:  # h11's hint for a Transfer-Encoding other than chunked, or two of them
            return self._refuse(
                400,
                "The request's Transfer-Encoding is not one this server reads (chunked, once); send the body with "
                "a Content-Length, or chunked.",
            )
        self._refuse(400, "The request is not valid HTTP/1.1; send a well-formed request (see /docs).")

    def _unsupported_upgrade_warning(self) -> None:
        """An upgrade asked for (h2c by ``curl --http2``, a WebSocket) is not taken, and the request is served as the
        plain one it also is (``server_config``: ws="none"): nothing to warn about, and no WebSocket library to
        install, as uvicorn's two warnings a request said."""

    def _enter(self, phase: str) -> None:
        self._phase = phase
        self._since = self._last = self.loop.time()
        self._received = 0
        self._arm(self.limits.read_timeout)

    def _leave(self) -> None:
        self._phase = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, self._expire)

    def _deadline(self) -> float:
        timeout = self.limits.read_timeout
        if self._phase == "head":
            return self._since + timeout
        by_rate = self._since + timeout + self._received / self.limits.min_upload_rate
        return min(self._last + timeout, by_rate)

    def _expire(self) -> None:
        self._timer = None
        if self._phase is None or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the application is behind, not the client: start the clock again
            return self._enter(self._phase)
        remaining = self._deadline() - self.loop.time()
        if remaining > 0:
            return self._arm(remaining)
        timeout = self.limits.read_timeout
        if self._phase == "head":
            if not self.conn.trailing_data[0]:  # an idle connection, not a slow request: close quietly
                return self._end()
            self.logger.warning("%s - request head not received within %g s; answered 408", self._peer(), timeout)
            return self._refuse(408, f"The request head did not arrive within {timeout:g} s; send it faster.")
        if self.cycle is None or self.cycle.response_started:  # answered already: stop reading the rest
            return self._end()
        self.logger.warning(
            '%s - "%s %s" body stalled after %d bytes (%g s per pause, %g bytes/s at least); answered 408',
            *(self._peer(), self.cycle.scope["method"], self.cycle.scope["path"], self._received, timeout),
            self.limits.min_upload_rate,
        )
        self._refuse(408, stalled_body_detail(self.limits))

    def _refuse(self, status: int, detail: str, retry_after: int | None = None) -> None:
        """Answer ``status`` with ``detail`` and close; the application, if running, sees a disconnect."""
        if not self.transport.is_closing():
            self.transport.write(raw_response(status, detail, retry_after=retry_after))
        self._end()

    def _end(self) -> None:
        self._ended_by_us = True
        self._leave()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # nothing more goes out; its receive() now says http.disconnect
            self.cycle.message_event.set()
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"

    def _holds_no_request(self) -> bool:
        """Open, but with no byte of a request on it: just opened, or kept alive between requests."""
        if self.conn.their_state is not h11.IDLE or self.conn.trailing_data[0] or self.transport.is_closing():
            return False
        return self.cycle is None or self.cycle.response_complete

    def _make_room(self, limit: int) -> int:
        """Close connections that hold no request until at most ``limit`` are open; the count left open.

        A crowd of connections that send nothing must not lock requests out
        (``/api/health`` among them): they wait for nothing, so closing them
        costs their clients only a new connection, as a kept-alive connection
        closed by any server does.
        """
        open_now = [c for c in self.connections if not c.transport.is_closing()]
        excess = len(open_now) - limit
        for other in open_now:
            if excess <= 0:
                break
            if other is not self and isinstance(other, GuardedProtocol) and other._holds_no_request():
                other._end()
                excess -= 1
        return limit + max(excess, 0)

    async def _app_unless_busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application, unless more than ``max_connections`` connections hold requests: then 503 and close."""
        if not scope["raw_path"].startswith(b"/", len(self.root_path)):  # not in origin form: one byte looked at
            scope = origin_form(scope, self.root_path)
        limit = self.limits.max_connections
        if (
            len(self.connections) <= limit
            or self._make_room(limit) <= limit
            or scope["path"] == self.root_path + ALWAYS_ANSWERED
        ):
            return await self._answered_unless_stopped(scope, receive, send)
        self.logger.warning(
            "%s - %d connections open, over the limit of %d; answered 503", self._peer(), len(self.connections), limit
        )
        detail = f"The server is busy ({limit} connections open); try again in a few seconds."
        headers = {"retry-after": "2", "connection": "close", "cache-control": "no-cache"}
        response = JSONResponse({"detail": detail}, status_code=503, headers=headers)
        response.raw_headers += security_headers("/api", "application/json")
        await response(scope, receive, send)

    async def _answered_unless_stopped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application; a request still unanswered when a stopping server's grace for the requests in flight
        is out (``workers.GRACEFUL_SHUTDOWN``), whose task uvicorn then cancels, is answered 503, not with
        uvicorn's plain-text 500 and a traceback in the log. The 503 is written as it is and the connection
        closed, with nothing awaited: a client that reads nothing (its answer waiting for room in the socket) would
        hold a send, and the server's exit, for good. A request whose client went away unanswered is cancelled
        (``connection_lost``), and ends quietly."""
        self._request_task = asyncio.current_task()
        if self.cycle is not None and self.cycle.waiting_for_100_continue:  # "Expect: 100-continue": rare
            send = closing_unless_continued(send, self.cycle)
        try:
            await self._application(scope, receive, send)
        except asyncio.CancelledError:  # uvicorn cancels a request's task only then; or its client left
            if self._client_left:
                return
            if self.cycle is None or self.cycle.response_started:
                raise
            self.logger.warning("%s - the server stopped before this request was answered; answered 503", self._peer())
            detail = "The server stopped before it could answer this request; send it again in a few seconds."
            self._refuse(503, detail, retry_after=2)
        finally:
            self._request_task = None


def protocol_for(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """``GuardedProtocol`` under ``limits``, as uvicorn's ``http`` protocol class (it makes one per connection)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})


def server_config(
    app: Any, *, host: str, port: int, limits: ConnectionLimits, log_level: str = "info", access_log: bool = False
) -> uvicorn.Config:
    """uvicorn's ``Config`` serving ``app`` with ``GuardedProtocol`` under ``limits`` (``access_log``: a line
    per request; uvicorn's own default is on, which cost 3% of a canvas request's CPU, 0.07 ms)."""
    http = protocol_for(limits)
    # ws="none": no WebSocket routes exist, and an Upgrade request is then served as the plain request it
    # also is, with the API's headers, instead of uvicorn's plain-text refusal.
    # uvicorn colours its log on any terminal: none where NO_COLOR is set (no-color.org) or TERM is dumb, as rich does.
    colours = None if os.environ.get("NO_COLOR", "") == "" and os.environ.get("TERM") != "dumb" else False
    return uvicorn.Config(
        app, host=host, port=port, http=http, ws="none", log_level=log_level, access_log=access_log, use_colors=colours
    )
