"""uvicorn's HTTP protocol, with each response's writes sent as one.

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
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Writes this large are not held: joining them would copy them, for no syscall saved.
HOLD_AT_MOST = 64 * 1024


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
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]
