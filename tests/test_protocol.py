"""CoalescingTransport (api/protocol.py): the writes of one event-loop turn reach the real
transport as one, in order, and nothing is lost to a close.

Each test runs a real asyncio transport over a real socket pair; the only addition is a
count of the writes that reach it. Every swdepot listener runs this protocol, so the
rest of the suite covers it end to end.
"""

from __future__ import annotations

import asyncio
import socket

from swdepot.api.protocol import HOLD_AT_MOST, CoalescingTransport


class Counted:
    """A real transport, recording what is written to it."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self.inner = inner
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.inner.write(data)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


async def _pair() -> tuple[CoalescingTransport, Counted, socket.socket]:
    """(the coalescing transport, the real one under it, counted, and the peer socket)."""
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    theirs.setblocking(False)
    counted = Counted(transport)
    return CoalescingTransport(counted, loop), counted, theirs  # type: ignore[arg-type]


async def _read_until_closed(peer: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    received = b""
    while chunk := await loop.sock_recv(peer, 1 << 20):
        received += chunk
    return received


def test_writes_of_one_turn_go_out_as_one_write_in_order() -> None:
    async def scenario() -> None:
        transport, counted, peer = await _pair()
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        transport.write(b"hello")
        assert counted.writes == []  # held until the turn ends
        await asyncio.sleep(0)
        assert counted.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]
        transport.write(b"next")  # a later turn: a write of its own
        await asyncio.sleep(0)
        assert counted.writes[1:] == [b"next"]
        transport.close()
        assert await _read_until_closed(peer) == (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhellonext")
        peer.close()

    asyncio.run(scenario())


def test_a_large_write_is_not_held_and_keeps_its_place() -> None:
    async def scenario() -> None:
        transport, counted, peer = await _pair()
        big = bytes(range(256)) * (HOLD_AT_MOST // 256 + 1)
        transport.write(b"head")
        transport.write(big)
        assert counted.writes == [b"head", big]  # at once, and what was held first
        reading = asyncio.ensure_future(_read_until_closed(peer))
        transport.write(b"tail")
        transport.close()  # a close sends what is held first
        assert await reading == b"head" + big + b"tail"
        peer.close()

    asyncio.run(scenario())


def test_an_abort_drops_what_is_held() -> None:
    async def scenario() -> None:
        transport, counted, peer = await _pair()
        transport.write(b"never sent")
        transport.abort()
        await asyncio.sleep(0)
        assert counted.writes == []
        assert transport.is_closing()  # forwarded to the real transport
        peer.close()

    asyncio.run(scenario())
