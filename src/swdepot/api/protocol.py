"""uvicorn's HTTP protocol, with each response's writes sent as one and polls answered
before any ASGI request is built.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and the body when it sends ``http.response.body``: two writes
on the transport. Over TLS each write is a record of its own and a ``send`` of its own,
and each ``send`` wakes the client, which on a two-core machine under load preempts
the event loop in the middle of its next request. A poll's answer is a few hundred bytes:
those two writes were a third of the service's time per poll under load (py-spy).

:class:`CoalescingTransport` holds the writes made during one turn of the event loop
and hands them to the real transport together at the end of that turn (``call_soon``),
so an answer sent without waiting in between (every small one: the shortcut's, and
Starlette's ``Response``) leaves as one record and one ``send``. Large writes, and any
write followed by a close, go out at once and in order.

:class:`CoalescingHttpToolsProtocol` also asks a :class:`~swdepot.api.shortcut.PollAnswerer`
about each request once its headers are in, and sends its answer itself. uvicorn would
otherwise build a scope, a request-response cycle, an ``asyncio.Event`` and a task, and
pass the answer through two ASGI messages and its header checks, for every poll: that
machinery cost more than the answer and the TLS together (180-220 µs of service CPU per
poll, against 47-75 µs for a bare uvloop protocol answering the same bytes over the same
TLS, and 21 µs for the answer itself; docs/performance.md). It answers only where
uvicorn's own path would write exactly the same bytes: a bodiless GET over HTTP/1.1
keep-alive, no response of the connection still being written, no request queued
behind one, no upgrade, no ``Expect``, the client reading what it is sent, and no
concurrency limit configured (uvicorn's access line, if that log is on, is logged as
uvicorn logs it). Everything else, and every request the answerer declines, takes
uvicorn's path unchanged.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr

from swdepot.logs import REQUEST_ID

if TYPE_CHECKING:
    from swdepot.api.shortcut import PollAnswer, PollAnswerer

#: Writes this large are not held: joining them would copy them, for no syscall saved.
HOLD_AT_MOST = 64 * 1024
#: Seconds an idle connection gets at shutdown to finish its close before it is aborted.
IDLE_CLOSE_GRACE = 0.5


class CoalescingTransport:
    """Forwards everything to ``inner``; the writes of one loop turn go out as one."""

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if len(data) >= HOLD_AT_MOST:
            self.flush()
            self._inner.write(data)
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def write_whole(self, data: bytes) -> None:
        """A complete answer in one write: sent now, after what is held (no turn to wait
        for, so no callback to schedule)."""
        self.flush()
        self._inner.write(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`, answering what
    ``polls`` answers itself (see the module's notes)."""

    def __init__(self, *args: Any, polls: PollAnswerer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._polls = polls
        self._answered = False  # the request being parsed was answered here

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]

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
        if self._polls is not None and self._answer_poll(self._polls):
            self._answered = True
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:  # (an answered request has no body: never called then)
            super().on_body(body)

    def on_message_complete(self) -> None:
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


def _response(default_headers: list[tuple[bytes, bytes]], answer: PollAnswer) -> bytes:
    """The bytes uvicorn writes for a 200 with these headers and body (no checks: the
    answerer's headers are its own constants and numbers)."""
    parts = [STATUS_LINE[200]]
    for name, value in (*default_headers, *answer.headers):
        parts += (name, b": ", value, b"\r\n")
    parts += (b"\r\n", answer.body)
    return b"".join(parts)
