"""uvicorn's HTTP protocol, with each response's writes sent as one and polls answered
before any ASGI request is built.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and the body when it sends ``http.response.body``: two writes
on the transport. Over TLS each write is a record of its own and a ``send`` of its own,
and each ``send`` wakes the client, which under load preempts the event loop in the
middle of its next request (what that cost: docs/performance.md).

:class:`CoalescingTransport` holds the writes made during one turn of the event loop
and hands them to the real transport together at the end of that turn (``call_soon``),
so an answer sent without waiting in between (every small one: the shortcut's, and
Starlette's ``Response``) leaves as one record and one ``send``. Large writes, and any
write followed by a close, go out at once and in order.

:class:`CoalescingHttpToolsProtocol` also asks a :class:`~swdepot.api.shortcut.PollAnswerer`
about each request once its headers are in, and sends its answer itself. uvicorn would
otherwise build a scope, a request-response cycle, an ``asyncio.Event`` and a task, and
pass the answer through two ASGI messages and its header checks, for every poll: that
machinery cost more than the answer and the TLS together (docs/performance.md). It
answers only where
uvicorn's own path would write exactly the same bytes: a bodiless GET over HTTP/1.1
keep-alive, no response of the connection still being written, no request queued
behind one, no upgrade, no ``Expect``, the client reading what it is sent, and no
concurrency limit configured (uvicorn's access line, if that log is on, is logged as
uvicorn logs it). Everything else, and every request the answerer declines, takes
uvicorn's path unchanged.

It also bounds what one connection may hold (:class:`RequestLimits`): a request line and
headers above ``max_head_bytes`` get 431, a connection that has not sent a complete head
within ``head_timeout`` of connecting or of its request's first byte gets 408 (or, if it
sent nothing, is closed), and a request body that stops arriving for
``body_idle_timeout`` while the app waits for it is cut off — over TLS as over TCP.
uvicorn's httptools protocol has none of these: over TLS, a request with 4,000 header
lines (240 KB) was never answered and held its connection open.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr

from swdepot.api.http import RequestRefused
from swdepot.api.limits import DEFAULT_LIMITS, RequestLimits
from swdepot.errors import INVALID_VALUE
from swdepot.logs import REQUEST_ID

if TYPE_CHECKING:
    from swdepot.api.shortcut import PollAnswer, PollAnswerer

#: Writes this large are not held: joining them would copy them, for no syscall saved.
HOLD_AT_MOST = 64 * 1024
#: Seconds an idle connection gets at shutdown to finish its close before it is aborted.
IDLE_CLOSE_GRACE = 0.5
#: After a refusal (431, 408), what the client still sends is read and dropped for this
#: long (or up to DRAIN_AT_MOST bytes), so that closing does not reset the connection
#: before the client has read the answer.
DRAIN_SECONDS = 1.0
DRAIN_AT_MOST = 1 << 20

#: What this protocol uses of uvicorn's HttpToolsProtocol: the methods it overrides or
#: calls, and the attributes it reads (uvicorn's internals: pyproject.toml holds uvicorn
#: to the minor version tested, and :func:`missing_internals` checks them at start-up).
USED_METHODS = ("connection_made", "connection_lost", "data_received", "shutdown",
                "on_message_begin", "on_url", "on_header", "on_headers_complete",
                "on_body", "on_message_complete", "on_response_complete")
USED_ATTRIBUTES = ("access_log", "access_logger", "client", "connections", "cycle",
                   "expect_100_continue", "flow", "headers", "limit_concurrency", "logger",
                   "loop", "parser", "pipeline", "root_path", "scope", "server_state",
                   "transport", "url")


class CoalescingTransport(asyncio.Transport):
    """Forwards everything to ``inner``; the writes of one loop turn go out as one.

    Every method a protocol may call is forwarded explicitly: what uvicorn calls
    (``write``, ``close``, ``is_closing``, ``get_extra_info``, ``pause_reading``,
    ``resume_reading``, ``set_protocol``) and the rest of ``asyncio.Transport``.
    """

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= HOLD_AT_MOST:
            self.flush()
            self._inner.write(data)
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data if isinstance(data, bytes) else bytes(data))  # held: a copy

    def write_whole(self, data: bytes) -> None:
        """A complete answer in one write: sent now, after what is held (no turn to wait
        for, so no callback to schedule)."""
        self.flush()
        self._inner.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Hand what is held to the real transport (unless the connection is gone)."""
        if not self._held:
            return
        held, self._held = self._held, []
        if not self._inner.is_closing():
            self._inner.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def abort(self) -> None:
        self._held = []
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + sum(map(len, self._held))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`, answering what
    ``polls`` answers itself (see the module's notes)."""

    def __init__(self, *args: Any, polls: PollAnswerer | None = None,
                 limits: RequestLimits = DEFAULT_LIMITS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._polls = polls
        self._limits = limits
        self._answered = False  # the request being parsed was answered here
        self._in_head = False  # between a request's first byte and its headers' end
        self._in_body = False  # between a request's headers and its end, for the app
        self._head_buffered = 0  # bytes received while the head was incomplete (a bound)
        self._head_started: float | None = None  # loop time the latest head began
        self._body_seen = 0.0  # loop time of the latest body bytes
        self._refusal: RequestRefused | None = None  # to answer once the parser returns
        self._drained: int | None = None  # None, or bytes dropped since a refusal
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))
        self._arm_head_timer(self._limits.head_timeout)  # a request must come in time

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    # --- limits -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._drained is not None:  # refused: read and drop until closed
            self._drained += len(data)
            if self._drained > DRAIN_AT_MOST:
                self.transport.close()
            return
        super().data_received(data)
        if self._in_head:  # a head goes on past this chunk: the parser holds its bytes
            self._head_buffered += len(data)
            if self._head_buffered > self._limits.max_head_bytes:
                self._refusal = _head_too_large(self._limits)
        elif self._in_body and self._body_timer is None:
            self._body_timer = self.loop.call_later(self._limits.body_idle_timeout,
                                                    self._body_late)
        if self._refusal is not None:
            self._refuse(self._refusal)

    # The two timers are armed once and re-armed only while they matter, so that a
    # request costs a clock read, not a timer (polls come thousands a second).

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_buffered = 0
        self._head_started = self.loop.time()
        if self._head_timer is None:
            self._arm_head_timer(self._limits.head_timeout)

    def _arm_head_timer(self, delay: float) -> None:
        self._head_timer = self.loop.call_later(delay, self._head_late)

    def _head_late(self) -> None:
        """``head_timeout`` after the connection opened or a head began, if not since."""
        self._head_timer = None
        if self._in_head and self._head_started is not None:
            left = self._head_started + self._limits.head_timeout - self.loop.time()
            if left > 0:
                self._arm_head_timer(left)  # another head began since the timer was set
                return
            self._refuse(RequestRefused(INVALID_VALUE, "The request's headers did not "
                                        f"arrive within {self._limits.head_timeout:g} "
                                        "seconds.", status=408))
        elif self._head_started is None and self._between_requests():
            self.transport.close()  # connected, and never sent a request

    def _body_late(self) -> None:
        self._body_timer = None
        if not self._in_body:
            return
        left = self._body_seen + self._limits.body_idle_timeout - self.loop.time()
        if left > 0 or self.flow.read_paused:  # a byte since, or the app is the slow one
            delay = left if left > 0 else self._limits.body_idle_timeout
            self._body_timer = self.loop.call_later(delay, self._body_late)
            return
        self.logger.warning("request body idle for %gs; closing the connection",
                            self._limits.body_idle_timeout)
        self.transport.abort()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _refuse(self, error: RequestRefused) -> None:
        """Answer ``error`` and close; what the client sends meanwhile is dropped."""
        self._refusal = None
        self._cancel_timers()
        if self._drained is not None:
            return
        self._drained = 0
        if not self._between_requests() or self.pipeline:
            self.transport.abort()  # a response is being written: no room for another
            return
        body = orjson.dumps(error.to_body())
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        head += (b"content-type: application/hal+json\r\ncontent-length: ",
                 str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body)
        transport: CoalescingTransport = self.transport  # type: ignore[assignment]
        transport.write_whole(b"".join(head))
        self.loop.call_later(DRAIN_SECONDS, self._close_after_refusal)

    def _close_after_refusal(self) -> None:
        self.transport.close()
        self.loop.call_later(IDLE_CLOSE_GRACE, self._abort_if_open)

    def shutdown(self) -> None:
        """Close as uvicorn does; abort an idle connection still open a moment later.

        Over TLS, closing an idle connection waits for the client's ``close_notify``, and
        an idle keep-alive client never sends one: ``swdepot serve`` sat out its whole
        graceful timeout (5 s) on a signal while any client kept a connection open. A
        response being written is still left to finish, as uvicorn leaves it.
        """
        idle = self._between_requests()
        super().shutdown()
        if idle:
            self.loop.call_later(IDLE_CLOSE_GRACE, self._abort_if_open)

    def _between_requests(self) -> bool:
        """No response of this connection is being written (uvicorn's own test)."""
        return self.cycle is None or self.cycle.response_complete

    def _abort_if_open(self) -> None:
        if self in self.connections:
            self.transport.abort()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._drained is not None or _head_size(self.url, self.headers) > \
                self._limits.max_head_bytes:
            self._refusal = self._refusal or _head_too_large(self._limits)
            self._answered = True  # nothing of this request reaches the app
            return
        if self._polls is not None and self._answer_poll(self._polls):
            self._answered = True
            return
        self._in_body = True
        self._body_seen = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:  # (an answered request has no body: never called then)
            self._body_seen = self.loop.time()
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._answered:
            self._answered = False
            return
        super().on_message_complete()

    def _may_answer(self) -> bool:
        """Whether uvicorn's own path would send this request's answer at once, as is."""
        parser = self.parser
        return (self._between_requests() and not self.pipeline
                and not self.flow.write_paused and not self.expect_100_continue
                and self.limit_concurrency is None
                and not self.root_path and parser.get_method() == b"GET"
                and parser.get_http_version() == "1.1" and parser.should_keep_alive()
                and not parser.should_upgrade())

    def _answer_poll(self, polls: PollAnswerer) -> bool:
        """Send the poll's answer and return True, or return False having sent nothing."""
        if not self._may_answer():
            return False
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            return False  # uvicorn's path reports it
        raw_path = url.path
        if b"%" in raw_path or not raw_path.isascii():
            return False  # a path to decode: uvicorn's path does it
        path = raw_path.decode("ascii")
        answer = polls.answer("GET", path, url.query or b"", self.headers,
                              self.client[0] if self.client else None)
        if answer is None:
            return False
        transport: CoalescingTransport = self.transport  # type: ignore[assignment]
        transport.write_whole(_response(self.server_state.default_headers, answer))
        if self.access_log:  # the line uvicorn's own path logs (swdepot runs without it)
            self.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(self.scope),
                                    "GET", urllib.parse.quote(path), "1.1", 200)
        token = REQUEST_ID.set(answer.request_id)
        try:
            polls.done(answer, {"method": "GET", "path": path, "principal": answer.principal})
        finally:
            REQUEST_ID.reset(token)
        self.on_response_complete()  # counts the request, arms the keep-alive timeout
        return True


def missing_internals() -> tuple[str, ...]:
    """What :data:`USED_METHODS` and :data:`USED_ATTRIBUTES` name that the installed
    uvicorn's HttpToolsProtocol lacks (empty: this protocol can run on it).

    Attributes are looked for among the names its ``__init__``, ``connection_made`` and
    ``on_message_begin`` use, where uvicorn sets them.
    """
    missing = [name for name in USED_METHODS
               if not callable(getattr(HttpToolsProtocol, name, None))]
    assigned: set[str] = set()
    for method in ("__init__", "connection_made", "on_message_begin"):
        code = getattr(getattr(HttpToolsProtocol, method, None), "__code__", None)
        assigned |= set(code.co_names) if code is not None else set()
    missing += [name for name in USED_ATTRIBUTES if name not in assigned]
    return tuple(missing)


def _head_size(url: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """The bytes of a request's target and headers as sent (``name: value`` + CRLF)."""
    return len(url) + sum(len(name) + len(value) + 4 for name, value in headers)


def _head_too_large(limits: RequestLimits) -> RequestRefused:
    return RequestRefused(INVALID_VALUE, "The request's line and headers are larger than "
                          f"{limits.max_head_bytes} bytes.", status=431)


def _response(default_headers: list[tuple[bytes, bytes]], answer: PollAnswer) -> bytes:
    """The bytes uvicorn writes for a 200 with these headers and body (no checks: the
    answerer's headers are its own constants and numbers)."""
    parts = [STATUS_LINE[200]]
    for name, value in (*default_headers, *answer.headers):
        parts += (name, b": ", value, b"\r\n")
    parts += (b"\r\n", answer.body)
    return b"".join(parts)
