"""Local test servers (HTTP, HTTPS, FTP) and fixtures for swdepot's download tests.

swdepot downloads packages from HTTP(S)/FTP/FILE URLs. Its transfer code must be tested against
real sockets -- auth challenges, range/resume negotiation, truncated bodies, connection resets
and stalls are exactly the behaviours that mocks get wrong. This plugin (loaded from
``tests/conftest.py`` via ``pytest_plugins = ["servers"]``) provides:

* :class:`ContentServer` -- a small threaded HTTP/1.1 file server with Basic auth, ETag /
  Last-Modified, single-range support, optional TLS and per-path fault injection
  (:class:`Fault`), recording every request it sees (:class:`RequestRecord`).
* :class:`FTPTestServer` -- pyftpdlib in a background thread, one named user plus anonymous.
* :func:`make_file` -- deterministic pseudo-random payloads with their SHA-256.
* fixtures: ``tls_ca``, ``tls_ca_file``, ``tls_server_cert``, ``content_dir``, ``import_dir``,
  ``content_server_factory``, ``http_server``, ``http_server_noauth``, ``https_server``,
  ``ftp_server`` and ``no_proxy_env``.

Every server binds 127.0.0.1 on an ephemeral port and is stopped (connections included) at
fixture teardown, so tests never talk to anything but the loopback interface and never leak
threads or ports into the next test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import random
import re
import socket
import socketserver
import ssl
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote, unquote, urlsplit

import pytest
import trustme

with warnings.catch_warnings():
    # pyftpdlib imports the stdlib asyncore/asynchat, which warn on every test run (3.11).
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

__all__ = [
    "HTTP_PASSWORD",
    "HTTP_USERNAME",
    "ContentServer",
    "FTPTestServer",
    "Fault",
    "FaultTable",
    "RequestRecord",
    "make_file",
]

LOOPBACK = "127.0.0.1"
HTTP_USERNAME = "pkguser"
HTTP_PASSWORD = "pkg-secret"
FTP_USERNAME = "ftpuser"
FTP_PASSWORD = "ftp-secret"

#: Bulk transfer unit. Large enough that multi-MiB payloads need only a handful of syscalls.
CHUNK_SIZE = 1 << 20
#: Granularity of ``trickle`` sends; small so the rate is smooth and shutdown is prompt.
TRICKLE_INTERVAL = 0.05
#: Upper bound for joining per-connection threads at shutdown before giving up with a warning.
JOIN_TIMEOUT = 5.0

_PROXY_VARS = ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy")


# --------------------------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------------------------


def make_file(directory: Path, name: str, size: int, seed: int = 0) -> tuple[Path, str]:
    """Create ``directory/name`` with ``size`` deterministic pseudo-random bytes.

    Random (incompressible, non-repeating) content catches offset bugs in resume/range code
    that a file of zeros would hide; seeding makes failures reproducible. Content is written in
    1 MiB blocks so multi-hundred-MiB files stay cheap. Returns the path and the hex SHA-256.
    Parent directories (e.g. for ``name="sub/pkg.tgz"``) are created.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    digest = hashlib.sha256()
    remaining = size
    with open(path, "wb") as fh:
        while remaining:
            block = rng.randbytes(min(CHUNK_SIZE, remaining))
            fh.write(block)
            digest.update(block)
            remaining -= len(block)
    return path, digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------------

FaultKind = Literal[
    "status", "truncate", "reset", "trickle", "redirect", "ignore_range", "ignore_if_range"
]
_FAULT_KINDS: frozenset[str] = frozenset(
    ("status", "truncate", "reset", "trickle", "redirect", "ignore_range", "ignore_if_range")
)
#: Faults that shape the response *body*; a HEAD has no body, so by default they only hit GET
#: (a downloader's preliminary HEAD must not silently use up a ``times=1`` fault).
_BODY_FAULTS: frozenset[str] = frozenset(("truncate", "reset", "trickle"))


@dataclass
class Fault:
    """A misbehaviour the :class:`ContentServer` applies to one URL path.

    Kinds:

    * ``status``: answer ``status`` (default 500) with a short text body, plus ``Retry-After``
      when ``retry_after`` is set -- for 403/404/5xx handling and retry back-off tests.
    * ``redirect``: answer ``status`` (default 302) with ``Location: location`` verbatim.
    * ``truncate``: send the normal headers (full ``Content-Length``), only the first
      ``after_bytes`` bytes of the body, then close cleanly (FIN) -- curl error 18.
    * ``reset``: like ``truncate`` but close with ``SO_LINGER`` 0 so the peer gets a TCP RST.
    * ``trickle``: send the body at ``bytes_per_second``; stops early when the server shuts
      down, so stall/low-speed-timeout tests do not hang teardown.
    * ``ignore_range``: behave like a server without range support (always 200 + full body).
    * ``ignore_if_range``: a lying server that honours ``Range`` even when ``If-Range`` no
      longer matches, answering 206 from whatever the file is now (with its new ETag).

    ``then`` chains a follow-up fault used once this one is exhausted; ``on_hit`` runs a
    callback whenever the fault is applied.

    Body faults apply to whatever the normal logic selected, so ``truncate`` on a ``Range``
    request cuts the 206 body. Auth is checked first: unauthenticated requests get 401 and do
    not consume the fault. ``times`` limits the fault to the first N matching requests (then
    normal serving resumes), which is what retry/resume tests need; ``hits`` counts how many
    requests it affected. ``methods`` restricts which methods match (default: GET only:
    swdepot sends ONTAP's three HEADs before every download's GET, and a fault models
    what the GET meets; ``methods=("HEAD",)`` makes the HEADs meet one).
    """

    kind: FaultKind
    status: int | None = None
    retry_after: int | str | None = None
    after_bytes: int = 0
    bytes_per_second: int = 64 * 1024
    location: str | None = None
    times: int | None = None
    methods: tuple[str, ...] | None = None
    hits: int = 0
    #: Applied instead once this fault is exhausted: chains such as "truncate once, then
    #: ignore ranges" for resume tests.
    then: Fault | None = None
    #: Called (on the handler thread) each time the fault is taken, before the response is
    #: built -- e.g. to change the file between two attempts of a download.
    on_hit: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {_FAULT_KINDS}")
        if self.kind == "redirect" and not self.location:
            raise ValueError("a redirect fault needs a location")
        if self.after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        if self.bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")

    @property
    def effective_methods(self) -> tuple[str, ...]:
        """Methods this fault matches (explicit ``methods`` or the kind-dependent default)."""
        if self.methods is not None:
            return tuple(m.upper() for m in self.methods)
        return ("GET",)

    @property
    def exhausted(self) -> bool:
        """True once a ``times``-limited fault has been applied ``times`` times."""
        return self.times is not None and self.hits >= self.times


def _normalize_path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class FaultTable(MutableMapping[str, Fault]):
    """Thread-safe ``{url_path: Fault}`` mapping shared by the test and the handler threads.

    The test thread installs faults while handler threads consume them; the lock makes the
    check-and-count of ``times`` atomic so concurrent requests can't both take a ``times=1``
    fault. Keys are URL paths (no query); a missing leading ``/`` is added.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def __getitem__(self, path: str) -> Fault:
        with self._lock:
            return self._faults[_normalize_path(path)]

    def __setitem__(self, path: str, fault: Fault) -> None:
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        with self._lock:
            self._faults[_normalize_path(path)] = fault

    def __delitem__(self, path: str) -> None:
        with self._lock:
            del self._faults[_normalize_path(path)]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def take(self, path: str, method: str) -> Fault | None:
        """Return the fault to apply to this request (counting it as a hit), or None."""
        with self._lock:
            fault = self._faults.get(_normalize_path(path))
            while fault is not None and fault.exhausted and fault.then is not None:
                fault = fault.then
            if fault is None or method.upper() not in fault.effective_methods or fault.exhausted:
                return None
            fault.hits += 1
        if fault.on_hit is not None:
            fault.on_hit()
        return fault


# --------------------------------------------------------------------------------------------
# HTTP(S) content server
# --------------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One request as the server saw it, for assertions about what a client actually sent.

    ``path`` is the decoded URL path without query, ``target`` the raw request target.
    ``headers`` keeps the client's spelling; use :meth:`header` for case-insensitive lookup.
    ``status`` is the status the server answered (None if the connection died first).
    """

    method: str
    path: str
    target: str
    headers: dict[str, str]
    status: int | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup (HTTP header names are case-insensitive)."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


class _RangeNotSatisfiable(Exception):
    """Raised by :func:`_parse_range` when the range lies entirely outside the file."""


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into inclusive ``(first, last)`` offsets.

    Returns None for anything we choose to ignore (multi-range, malformed, last < first) --
    RFC 9110 lets a server ignore Range and answer 200, which keeps this server small.
    Raises :class:`_RangeNotSatisfiable` for syntactically valid but unsatisfiable ranges.
    """
    match = _RANGE_RE.match(header)
    if match is None:
        return None
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # suffix range: the last N bytes
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            raise _RangeNotSatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_s)
    if first >= size:
        raise _RangeNotSatisfiable
    last = int(last_s) if last_s else size - 1
    if last < first:
        return None
    return first, min(last, size - 1)


class _Handler(BaseHTTPRequestHandler):
    """Per-connection request handler; all state lives on the owning :class:`ContentServer`."""

    protocol_version = "HTTP/1.1"  # keep-alive, so clients' connection reuse is exercised
    server_version = "swdepot-test-http/1.0"
    sys_version = ""
    timeout = 30.0  # safety net only; shutdown aborts idle keep-alive connections itself
    disable_nagle_algorithm = True

    server: _HTTPServer
    _record: RequestRecord | None = None

    # -- plumbing ----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            # The listener is wrapped with do_handshake_on_connect=False so a slow or broken
            # client can't stall the accept loop; the handshake happens here, per connection.
            self.connection.do_handshake()

    def handle_one_request(self) -> None:
        self._record = None
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; ``ContentServer.requests`` is the inspectable log."""

    def send_response(self, code: int, message: str | None = None) -> None:
        if self._record is not None:
            self._record.status = code
        super().send_response(code, message)

    @property
    def _content(self) -> ContentServer:
        return self.server.content

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    # -- request logic -----------------------------------------------------------------------

    def _serve(self, *, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self._record = RequestRecord(
            method=self.command, path=path, target=self.path, headers=dict(self.headers.items())
        )
        self._content._log_request(self._record)

        if not self._authorized():
            self._send_simple(
                401,
                b"authentication required\n",
                {"WWW-Authenticate": 'Basic realm="test"'},
                head=head,
            )
            return

        fault = self._content.faults.take(path, self.command)
        if fault is not None and fault.kind == "status":
            extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            status = fault.status or 500
            self._send_simple(status, f"injected status {status}\n".encode(), extra, head=head)
            return
        if fault is not None and fault.kind == "redirect":
            assert fault.location is not None  # guaranteed by Fault.__post_init__
            self._send_simple(
                fault.status or 302,
                f"moved to {fault.location}\n".encode(),
                {"Location": fault.location},
                head=head,
            )
            return

        file_path = self._content.resolve(path)
        if file_path is None:
            self._send_simple(404, b"not found\n", head=head)
            return
        try:
            fh = open(file_path, "rb")  # noqa: SIM115 - closed in the finally below
        except OSError:
            self._send_simple(404, b"not found\n", head=head)
            return
        try:
            self._serve_file(fh, head=head, fault=fault)
        finally:
            fh.close()

    def _authorized(self) -> bool:
        content = self._content
        if content.username is None or content.password is None:
            return True
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            supplied = base64.b64decode(value.strip(), validate=True)
        except ValueError:  # binascii.Error
            return False
        expected = f"{content.username}:{content.password}".encode()
        return hmac.compare_digest(supplied, expected)

    def _if_range_matches(self, etag: str, last_modified: str) -> bool:
        """RFC 9110 If-Range: a range is only honoured if the validator is still current."""
        value = self.headers.get("If-Range")
        if value is None:
            return True
        value = value.strip()
        if value.startswith(('"', "W/")):
            return value == etag  # strong comparison; weak tags never match
        return value == last_modified

    def _serve_file(self, fh: IO[bytes], *, head: bool, fault: Fault | None) -> None:
        st = os.fstat(fh.fileno())
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        last_modified = formatdate(st.st_mtime, usegmt=True)
        supports_range = fault is None or fault.kind != "ignore_range"

        status, first, length = 200, 0, size
        range_header = self.headers.get("Range")
        validated = (fault is not None and fault.kind == "ignore_if_range") or \
            self._if_range_matches(etag, last_modified)
        if range_header and supports_range and validated:
            try:
                selected = _parse_range(range_header, size)
            except _RangeNotSatisfiable:
                self._send_simple(
                    416, b"range not satisfiable\n", {"Content-Range": f"bytes */{size}"}, head=head
                )
                return
            if selected is not None:
                first, last = selected
                status, length = 206, last - first + 1

        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        if supports_range:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{first + length - 1}/{size}")
        self.end_headers()
        if head:
            return

        if fault is None or fault.kind in ("ignore_range", "ignore_if_range"):
            self._send_bytes(fh, first, length)
        elif fault.kind == "truncate":
            self._send_bytes(fh, first, min(fault.after_bytes, length))
            self.close_connection = True  # FIN after a short body: the client sees EOF
        elif fault.kind == "reset":
            self._send_bytes(fh, first, min(fault.after_bytes, length))
            self._abort_connection()
        elif fault.kind == "trickle":
            self._trickle(fh, first, length, fault.bytes_per_second)

    # -- output helpers ----------------------------------------------------------------------

    def _send_simple(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, *, head: bool
    ) -> None:
        """Send a small complete response; always with Content-Length so keep-alive works."""
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_bytes(self, fh: IO[bytes], offset: int, count: int) -> None:
        """Send ``count`` bytes of ``fh`` from ``offset`` as fast as the transport allows."""
        if count <= 0:
            return  # socket.sendfile treats count=0 as "whole file" -- not what we want
        sock = self.connection
        if isinstance(sock, ssl.SSLSocket):
            # No kernel sendfile through TLS; socket.sendfile would fall back to 8 KiB sends.
            fh.seek(offset)
            remaining = count
            while remaining:
                block = fh.read(min(CHUNK_SIZE, remaining))
                if not block:
                    break
                sock.sendall(block)
                remaining -= len(block)
        else:
            sock.sendfile(fh, offset, count)  # os.sendfile under the hood

    def _trickle(self, fh: IO[bytes], offset: int, count: int, bytes_per_second: int) -> None:
        """Send slowly on a fixed schedule; bail out as soon as the server is stopping."""
        per_tick = max(1, int(bytes_per_second * TRICKLE_INTERVAL))
        stopping = self.server.stopping
        fh.seek(offset)
        remaining = count
        while remaining:
            block = fh.read(min(per_tick, remaining))
            if not block:
                break
            self.connection.sendall(block)
            remaining -= len(block)
            if remaining and stopping.wait(TRICKLE_INTERVAL):
                break
        if remaining:
            self.close_connection = True  # body is short; the connection can't be reused

    def _abort_connection(self) -> None:
        """Close with SO_LINGER 0 so the kernel sends RST instead of FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference to the socket; the real close() only happens once it's gone.
        self.rfile.close()
        self.connection.close()


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks connections/threads so shutdown is prompt and complete.

    The stock server either leaves daemon threads behind or (block_on_close) joins handler
    threads that may sit on an idle keep-alive connection for ``timeout`` seconds. We instead
    remember live connections, shut their sockets down at stop, and join with a bound.
    """

    daemon_threads = True
    block_on_close = False  # we join our own threads in ContentServer.stop()
    request_queue_size = 64

    def __init__(self, content: ContentServer, ssl_context: ssl.SSLContext | None) -> None:
        self.content = content
        self.stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.handler_threads: list[threading.Thread] = []
        super().__init__((LOOPBACK, 0), _Handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), i.e. a reverse DNS lookup; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"content-server-{self.server_port}-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._connections.add(request)
            self.handler_threads = [t for t in self.handler_threads if t.is_alive()]
            self.handler_threads.append(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def abort_connections(self) -> None:
        """Wake every handler blocked on its socket so its thread can finish."""
        with self._conn_lock:
            connections = list(self._connections)
        for sock in connections:
            # OSError: already closed by its handler. Base-class call: SSLSocket.shutdown
            # would also drop its SSL object under the handler thread that is using it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # client went away, TLS handshake refused, reset, timeout: expected noise
        if exc is not None:
            self.content.errors.append(exc)
        super().handle_error(request, client_address)


class ContentServer:
    """Threaded HTTP/1.1 (optionally HTTPS) server for the files under ``root``.

    Serves GET/HEAD with Content-Length, ETag, Last-Modified and single byte ranges (206,
    If-Range, 416), optional all-or-nothing Basic auth, and per-path faults via
    ``server.faults[path] = Fault(...)``. Every request is appended to ``server.requests``.
    Unexpected handler exceptions (bugs in this module, not client disconnects) are collected
    in ``server.errors``. Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    host = LOOPBACK

    def __init__(
        self,
        root: Path,
        *,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("username and password must be given together")
        self.root = Path(root)
        self.username = username
        self.password = password
        self.tls = ssl_context is not None
        self.faults = FaultTable()
        self.requests: list[RequestRecord] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(self, ssl_context)
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ContentServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # bounds how long stop() waits for the loop
            name=f"content-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, abort open connections and join all threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        httpd = self._httpd
        httpd.stopping.set()  # ends trickles promptly
        if self._thread is not None:
            httpd.shutdown()  # only safe once serve_forever runs, else it blocks forever
            self._thread.join()
        httpd.server_close()
        httpd.abort_connections()
        with httpd._conn_lock:
            threads = list(httpd.handler_threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
        stuck = [t for t in threads if t.is_alive()]
        if stuck:
            warnings.warn(
                f"ContentServer on port {self.port}: {len(stuck)} handler thread(s) still "
                "running after stop()",
                ResourceWarning,
                stacklevel=2,
            )

    def __enter__(self) -> ContentServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addressing --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_port

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """Absolute URL for ``path`` (leading ``/`` optional, percent-encoded here)."""
        return self.base_url + quote(_normalize_path(path), safe="/")

    # -- used by the handler -----------------------------------------------------------------

    def resolve(self, url_path: str) -> Path | None:
        """Map a decoded URL path to a regular file under ``root``; None if absent/outside."""
        try:
            root = self.root.resolve()
            candidate = (root / url_path.lstrip("/")).resolve()
        except (OSError, ValueError):
            return None
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate

    def _log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def requests_for(self, path: str) -> list[RequestRecord]:
        """Records for one URL path, in arrival order."""
        path = _normalize_path(path)
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def get_ranges(self, path: str) -> list[str | None]:
        """The Range header of every GET for one URL path (None where there was none)."""
        return [r.header("Range") for r in self.requests_for(path) if r.method == "GET"]


# --------------------------------------------------------------------------------------------
# FTP server
# --------------------------------------------------------------------------------------------


class _CutProducer:
    """Wraps pyftpdlib's file producer so a RETR ends early (a truncated download)."""

    def __init__(self, producer: Any, limit: int) -> None:
        self._producer = producer
        self._left = limit

    def more(self) -> bytes:
        if self._left <= 0:
            return b""
        chunk = self._producer.more()[: self._left]
        self._left -= len(chunk)
        return chunk


class FTPTestServer:
    """pyftpdlib serving ``root`` read-only to one named user and to anonymous.

    pyftpdlib is single-threaded async; it runs in a background thread that polls in short
    slices so :meth:`stop` can end it from the test thread. The server gets its own IOLoop
    (not the process-wide singleton) so consecutive tests can't share sockets, and all
    sockets are closed from the loop thread itself (``close_all``), which is race-free.
    """

    host = LOOPBACK

    def __init__(
        self,
        root: Path,
        *,
        username: str = FTP_USERNAME,
        password: str = FTP_PASSWORD,
        anonymous: bool = True,
        send_limit: int | None = None,
    ) -> None:
        """``send_limit``: bytes per second each data connection sends at most."""
        self.root = Path(root)
        self.username = username
        self.password = password
        authorizer = DummyAuthorizer()
        authorizer.add_user(username, password, str(self.root), perm="elr")
        if anonymous:
            authorizer.add_anonymous(str(self.root), perm="elr")
        #: Fault injection for resume tests: each RETR pops the next entry and, if it is not
        #: None, sends only that many bytes before closing the data connection normally.
        self.cut_retr_after: list[int | None] = []
        #: The ``REST`` offset of every RETR, in order (0 when the client sent none).
        self.retr_offsets: list[int] = []
        #: Callbacks run before each SIZE command is answered (popped in order; None skips),
        #: e.g. to replace the file between two attempts of a download.
        self.before_size: list[Callable[[], None] | None] = []
        server = self

        def ftp_SIZE(handler: FTPHandler, path: str) -> Any:
            hook = server.before_size.pop(0) if server.before_size else None
            if hook is not None:
                hook()
            return FTPHandler.ftp_SIZE(handler, path)

        def push_dtp_data(handler: FTPHandler, data: Any, isproducer: bool = False,
                          file: Any = None, cmd: str | None = None) -> None:
            if cmd == "RETR" and isproducer:
                server.retr_offsets.append(file.tell() if file is not None else 0)
                limit = server.cut_retr_after.pop(0) if server.cut_retr_after else None
                if limit is not None:
                    handler.use_sendfile = False  # sendfile would bypass the wrapper
                    data = _CutProducer(data, limit)
            FTPHandler.push_dtp_data(handler, data, isproducer, file, cmd)

        handler = type(
            "_TestFTPHandler",
            (FTPHandler,),
            {
                "authorizer": authorizer,
                "passive_ports": None,  # kernel-chosen free port per PASV/EPSV
                "auth_failed_timeout": 0,  # default 3 s delay would slow wrong-password tests
                "timeout": 30,
                "banner": "swdepot test ftpd ready.",
                "push_dtp_data": push_dtp_data,
                "ftp_SIZE": ftp_SIZE,
                **({"dtp_handler": type("_ThrottledDTP", (ThrottledDTPHandler,),
                                        {"write_limit": send_limit})}
                   if send_limit else {}),
            },
        )
        self._ioloop = IOLoop()
        self._server = FTPServer((LOOPBACK, 0), handler, ioloop=self._ioloop)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logger = logging.getLogger("pyftpdlib")
        self._saved_level: int | None = None

    @property
    def port(self) -> int:
        return int(self._server.address[1])

    def url(self, path: str = "/", user: str | None = None, password: str | None = None) -> str:
        """``ftp://[user[:password]@]127.0.0.1:PORT/path``.

        With ``user`` equal to :attr:`username` and no ``password``, the configured password is
        embedded; any other user is emitted without a password unless one is given.
        """
        netloc = f"{self.host}:{self.port}"
        if user is not None:
            if password is None and user == self.username:
                password = self.password
            userinfo = quote(user, safe="")
            if password is not None:
                userinfo += ":" + quote(password, safe="")
            netloc = f"{userinfo}@{netloc}"
        return f"ftp://{netloc}{quote(_normalize_path(path), safe='/')}"

    def start(self) -> FTPTestServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        # A handler on the pyftpdlib logger stops IOLoop.loop() from installing its own stderr
        # handler; the level keeps per-command INFO lines out of pytest's captured logs.
        if not self._logger.handlers:
            self._logger.addHandler(logging.NullHandler())
        self._saved_level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)
        self._thread = threading.Thread(
            target=self._run, name=f"ftp-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        finally:
            self._server.close_all()

    def stop(self) -> None:
        """Stop the loop and close every control/data socket. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                warnings.warn("FTP server thread did not stop", ResourceWarning, stacklevel=2)
        else:
            self._server.close_all()
        if self._saved_level is not None:
            self._logger.setLevel(self._saved_level)
            self._saved_level = None

    def __enter__(self) -> FTPTestServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop proxy variables so libcurl/requests reach the loopback servers directly.

    A CI runner's ``http_proxy`` would otherwise route 127.0.0.1 traffic off the machine.
    All server fixtures depend on this.
    """
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """Throw-away CA for the whole session; clients trust it via ``tls_ca_file``."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEM file of the test CA, for ``pycurl.CAINFO`` / ``requests(verify=...)`` / swdepot."""
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def tls_server_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    """Server certificate for 127.0.0.1 and localhost (issued once; key generation is slow)."""
    return tls_ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def content_dir(tmp_path: Path) -> Path:
    """Document root shared by ``http_server*``, ``https_server`` and ``ftp_server``."""
    path = tmp_path / "www"
    path.mkdir()
    return path


@pytest.fixture
def import_dir(tmp_path: Path) -> Path:
    """Directory for ``file://`` import tests (use ``path.as_uri()``)."""
    path = tmp_path / "import"
    path.mkdir()
    return path


ContentServerFactory = Callable[..., ContentServer]


@pytest.fixture
def content_server_factory(
    content_dir: Path, tls_server_cert: trustme.LeafCert, no_proxy_env: None
) -> Iterator[ContentServerFactory]:
    """Build extra started :class:`ContentServer` instances; all are stopped at teardown.

    ``factory(root=content_dir, *, auth=True, tls=False, username=..., password=...)`` --
    e.g. a second origin for cross-server redirect tests.
    """
    servers: list[ContentServer] = []

    def factory(
        root: Path | None = None,
        *,
        auth: bool = True,
        tls: bool = False,
        username: str = HTTP_USERNAME,
        password: str = HTTP_PASSWORD,
    ) -> ContentServer:
        context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_server_cert.configure_cert(context)
        server = ContentServer(
            root if root is not None else content_dir,
            username=username if auth else None,
            password=password if auth else None,
            ssl_context=context,
        )
        servers.append(server)
        return server.start()

    yield factory
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def http_server(content_server_factory: ContentServerFactory) -> ContentServer:
    """Plain HTTP over ``content_dir``, Basic auth ``pkguser`` / ``pkg-secret``."""
    return content_server_factory(auth=True)


@pytest.fixture
def http_server_noauth(content_server_factory: ContentServerFactory) -> ContentServer:
    """Plain HTTP over ``content_dir`` without authentication."""
    return content_server_factory(auth=False)


@pytest.fixture
def https_server(content_server_factory: ContentServerFactory) -> ContentServer:
    """HTTPS (cert from ``tls_ca`` for 127.0.0.1/localhost) over ``content_dir``, Basic auth."""
    return content_server_factory(auth=True, tls=True)


@pytest.fixture
def ftp_server(content_dir: Path, no_proxy_env: None) -> Iterator[FTPTestServer]:
    """FTP over ``content_dir``: ``ftpuser`` / ``ftp-secret`` (perm elr) plus anonymous."""
    server = FTPTestServer(content_dir).start()
    try:
        yield server
    finally:
        server.stop()
