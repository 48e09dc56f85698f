"""api/protocol.py: the writes of one event-loop turn reach the real transport as one, in
order, and nothing is lost to a close; polls are answered by the protocol itself exactly
as the app answers them, and only where uvicorn's own path would send the same bytes.

The transport tests run a real asyncio transport over a real socket pair; the only
addition is a count of the writes that reach it. The poll tests run uvicorn's protocol
as swdepot configures it on a real socket, in front of the service's real app, and send
it raw HTTP/1.1. Every swdepot listener runs this protocol, so the rest of the suite
covers it end to end.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import socket
import threading
from typing import Any

import pytest
from uvicorn.server import ServerState

from pkgfactory import make_package
from service import ADMIN_PASSWORD
from swdepot.api.app import create_app
from swdepot.api.protocol import HOLD_AT_MOST, CoalescingTransport
from swdepot.api.shortcut import PollAnswerer
from swdepot.server import uvicorn_config


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


def test_a_whole_answer_goes_out_at_once_behind_what_is_held() -> None:
    async def scenario() -> None:
        transport, counted, peer = await _pair()
        transport.write(b"earlier")
        transport.write_whole(b"answer")
        assert counted.writes == [b"earlier", b"answer"]  # no turn waited for, in order
        await asyncio.sleep(0)
        assert counted.writes == [b"earlier", b"answer"]  # nothing left to flush
        transport.close()
        assert await _read_until_closed(peer) == b"earlieranswer"
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


# --- polls answered by the protocol itself --------------------------------------------------


class Recorder:
    """An ASGI app in front of another, recording the request lines that reach it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope["query_string"].decode()
            self.seen.append(f"{scope['method']} {scope['path']}" + (f"?{query}" if query else ""))
        await self.app(scope, receive, send)


class Listener:
    """uvicorn's protocol as swdepot configures it, on a plain socket of 127.0.0.1, in an
    event loop on a thread of its own, in front of the service's full app (no shortcut
    in it: whatever the protocol does not answer, the routes do)."""

    def __init__(self, service: Any, *, polls: bool) -> None:
        self.app = Recorder(create_app(service, poll_shortcut=False))
        config = uvicorn_config(self.app, "127.0.0.1", 0, lifespan="off", log_config=None,
                                polls=PollAnswerer(service) if polls else None)
        config.load()
        self.state = ServerState()
        # what uvicorn's server loop keeps there: the date, refreshed every second
        self.state.default_headers = [(b"date", b"Tue, 01 Dec 2026 12:00:00 GMT")]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        def protocol() -> Any:
            return config.http_protocol_class(config=config, server_state=self.state,
                                              app_state={}, _loop=self.loop)

        async def listen() -> asyncio.Server:
            return await self.loop.create_server(protocol, "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def exchange(self, raw: bytes, answers: int = 1) -> list[bytes]:
        """Send ``raw`` in one write on a fresh connection; the first ``answers`` responses."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            conn.sendall(raw)
            received, found = b"", []
            while len(found) < answers:
                head_end = received.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = received[:head_end].decode("latin-1").lower()
                    size = int(re.search(r"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
                    end = head_end + 4 + (0 if raw.startswith(b"HEAD ") else size)
                    if len(received) >= end:
                        found.append(received[:end])
                        received = received[end:]
                        continue
                chunk = conn.recv(65536)
                assert chunk, f"connection closed after {len(found)} answers"
                received += chunk
            return found

    def served(self) -> int:
        """uvicorn's count of answered requests, read on the loop's own thread: the
        answer leaves before the callback that wrote it counts it."""
        async def count() -> int:
            return self.state.total_requests

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def comparable(answer: bytes) -> bytes:
    """An answer without what differs between two sends of it (its date, request id)."""
    return re.sub(rb"(?m)^(date|x-request-id): [^\r]*\r\n", b"", answer)


@pytest.fixture
def listeners(swdepot):
    """(swdepot's protocol answering polls, the same protocol leaving all to the app)."""
    fast, full = Listener(swdepot.service, polls=True), Listener(swdepot.service, polls=False)
    yield fast, full
    fast.close()
    full.close()


@pytest.fixture
def job(api, http_server_noauth, content_dir) -> str:
    """A finished download job's uuid (the download also caches the admin's login)."""
    make_package(content_dir, "ok.tgz", "9.18.1")
    done = api.download(http_server_noauth.url("ok.tgz"))
    assert done["state"] == "success"
    return done["uuid"]


AUTH = "Authorization: Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()


def get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", AUTH, *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_polls_are_answered_by_the_protocol_exactly_as_by_the_app(listeners, job):
    fast, _ = listeners
    for path in (f"/api/cluster/jobs/{job}", "/api/cluster/software/download"):
        for accept in ((), ("Accept: application/json",), ("Accept: application/hal+json",)):
            ours, theirs = (listener.exchange(get(path, *accept))[0] for listener in listeners)
            assert ours.startswith(b"HTTP/1.1 200 OK\r\n")
            assert comparable(ours) == comparable(theirs)
            assert b"\r\ndate: " in ours and b"\r\nx-request-id: " in ours
    kept = fast.exchange(get(f"/api/cluster/jobs/{job}", "X-Request-Id: trace-9"))[0]
    assert b"\r\nx-request-id: trace-9\r\n" in kept
    assert fast.app.seen == []  # not one reached the app
    assert fast.served() == 7  # counted as uvicorn counts its answers


def test_what_the_protocol_leaves_to_the_app(listeners, job):
    """Whatever needs the framework, or would be answered other than as a plain 200
    over keep-alive, reaches the app, and is answered as it answers it."""
    fast, _ = listeners
    path = f"/api/cluster/jobs/{job}"
    cases = [
        get(path, method="HEAD"),
        get(path, version="1.0"),
        get(path, "Connection: close"),
        get(path, "Expect: 100-continue"),
        get(path + "?fields=state"),
        get(path.replace("jobs", "%6aobs")),
        get(path, "Content-Length: 2")[:-4] + b"\r\n\r\n{}",
        get("/api/cluster/jobs/no-such-job"),
        get("/api/cluster/software/download", method="POST"),
        get(path).replace(AUTH.encode(), b"Authorization: Basic YWRtaW46bm8="),
    ]
    for raw in cases:
        ours, theirs = (listener.exchange(raw)[0] for listener in listeners)
        assert comparable(ours) == comparable(theirs), raw
    assert len(fast.app.seen) == len(cases)


def test_pipelined_requests_are_answered_in_order(listeners, job):
    fast, _ = listeners
    poll = get(f"/api/cluster/jobs/{job}")
    # three polls in one write: all answered by the protocol, one after the other
    answers = fast.exchange(poll * 3, answers=3)
    assert len({comparable(a) for a in answers}) == 1 and fast.app.seen == []
    # a poll behind a request the app is still answering waits for it, then goes the
    # app's way too (the protocol never answers ahead of an earlier request)
    answers = fast.exchange(get("/api/cluster") + poll, answers=2)
    assert b'"name"' in answers[0] and f'"uuid":"{job}"'.encode() in answers[1]
    assert fast.app.seen == ["GET /api/cluster", f"GET /api/cluster/jobs/{job}"]


# --- uvicorn's internals ------------------------------------------------------------------


def test_the_installed_uvicorn_has_what_the_protocol_uses() -> None:
    from swdepot.api import protocol

    assert protocol.missing_internals() == ()
    assert isinstance(uvicorn_config(create_app_stub, "127.0.0.1", 0).http, functools.partial)


def create_app_stub(scope, receive, send):  # pragma: no cover - never called
    raise AssertionError


def test_a_uvicorn_without_them_runs_its_own_protocol_with_a_warning(
        monkeypatch, caplog, settings, start_service) -> None:
    from swdepot.api import protocol

    monkeypatch.setattr(protocol, "USED_ATTRIBUTES", (*protocol.USED_ATTRIBUTES, "renamed"))
    monkeypatch.setattr(protocol, "USED_METHODS", (*protocol.USED_METHODS, "on_gone"))
    with caplog.at_level("WARNING", logger="swdepot.server"):
        config = uvicorn_config(create_app_stub, "127.0.0.1", 0)
    assert config.http == "httptools"
    assert "renamed, on_gone" not in caplog.text and "on_gone, renamed" in caplog.text
    svc = start_service(settings)  # and the service still serves, on uvicorn's protocol
    assert svc.api.get("/api/cluster").status_code == 200
    assert svc.api.get("/api/cluster/software/download").status_code == 200  # the shortcut
