"""Bounded requests (api/protocol.py, RequestLimits): heads above the limit get 431, heads
that arrive too slowly 408, a silent connection is closed, a request body that stops is
cut off; over TLS as over plain TCP, with real sockets against the real service."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from service import ADMIN_PASSWORD, free_port
from swdepot.server import service_config

AUTH = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode())
LIMIT = 64 * 1024


class Listener:
    """How to reach one listener of the service: TLS or plain, on its port."""

    def __init__(self, port: int, tls: bool) -> None:
        self.port = port
        self.tls = tls

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if not self.tls:
            return sock
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context.wrap_socket(sock)

    def __repr__(self) -> str:
        return "tls" if self.tls else "plain"


@pytest.fixture
def limited(settings, start_service):
    return start_service(settings, request_head_timeout=0.5, request_body_timeout=0.5)


@pytest.fixture(params=["tls", "plain"])
def listener(request, limited) -> Iterator[Listener]:
    if request.param == "tls":
        yield Listener(limited.settings.port, tls=True)
        return
    port = free_port()
    server = uvicorn.Server(service_config(limited.service, "127.0.0.1", port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "plain listener"
        time.sleep(0.01)
    yield Listener(port, tls=False)
    server.should_exit = True
    thread.join(timeout=10)


def head(extra: bytes = b"", path: bytes = b"/api/cluster") -> bytes:
    return (b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic " + AUTH
            + b"\r\n" + extra)


def many_headers(total: int) -> bytes:
    lines, size = [], 0
    while size < total:
        line = f"X-Header-{len(lines)}: {'b' * 50}\r\n".encode()
        lines.append(line)
        size += len(line)
    return b"".join(lines)


def read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one answer; reads until the body is complete."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, rest[:length]


def closed(sock: socket.socket, within: float) -> bool:
    """Whether the service closes the connection within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
    return True


def test_a_head_over_the_limit_gets_431_and_a_close(listener):
    # 4,000 header lines: over TLS, uvicorn's protocol alone never answered this
    with listener.connect() as sock:
        sock.sendall(head(many_headers(240_000) + b"\r\n"))
        status, headers, body = read_answer(sock)
        assert status == 431 and headers["connection"] == "close"
        error = json.loads(body)["error"]
        assert error["code"] == "262185" and str(LIMIT) in error["message"]
        assert closed(sock, within=5)


def test_one_huge_header_line_gets_431_too(listener):
    with listener.connect() as sock:
        sock.sendall(head(b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n"))
        assert read_answer(sock)[0] == 431


def test_a_head_under_the_limit_is_answered_and_the_connection_kept(listener):
    with listener.connect() as sock:
        for _ in range(2):
            sock.sendall(head(many_headers(LIMIT - 2048) + b"\r\n"))
            status, headers, _ = read_answer(sock)
            assert status == 200 and headers.get("connection") != "close"


def test_a_head_that_stops_arriving_gets_408(listener):
    with listener.connect() as sock:
        sock.sendall(head(b"X-Slow: yes\r\n"))  # no blank line: the head never ends
        started = time.monotonic()
        status, _, body = read_answer(sock)
        assert status == 408 and "0.5 seconds" in json.loads(body)["error"]["message"]
        assert time.monotonic() - started < 5
        assert closed(sock, within=5)


def test_a_connection_that_sends_nothing_is_closed(listener):
    with listener.connect() as sock:
        assert closed(sock, within=5)


def test_a_trickled_head_that_ends_in_time_is_answered(listener):
    with listener.connect() as sock:
        request = head(b"\r\n")
        for start in range(0, len(request), 20):  # all of it within the 0.5 s
            sock.sendall(request[start:start + 20])
            time.sleep(0.01)
        assert read_answer(sock)[0] == 200


def test_a_body_that_stops_arriving_is_cut_off(listener):
    with listener.connect() as sock:
        sock.sendall(b"POST /api/cluster/software/download HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Basic " + AUTH + b"\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 1000\r\n\r\n{\"url\": ")
        assert closed(sock, within=5)


def test_a_slow_body_that_keeps_coming_is_read(listener):
    body = json.dumps({"url": "ftp://127.0.0.1:1/x.tgz"}).encode()
    with listener.connect() as sock:
        sock.sendall(b"POST /api/cluster/software/download HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Basic " + AUTH + b"\r\nContent-Type: application/json"
                     b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for piece in (body[:10], body[10:20], body[20:]):  # each gap under the 0.5 s
            time.sleep(0.3)
            sock.sendall(piece)
        assert read_answer(sock)[0] == 202  # accepted: the body came whole
