"""Runs the service under uvicorn (uvloop + httptools), over HTTPS by default."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from swdepot.api.app import create_app
from swdepot.api.limits import DEFAULT_LIMITS, RequestLimits
from swdepot.api.shortcut import PollAnswerer
from swdepot.auth import PendingHash
from swdepot.config import Settings
from swdepot.nodelock import NodeLock
from swdepot.service import Service
from swdepot.tls import SelfSigned, harden

log = logging.getLogger(__name__)


def uvicorn_config(app: ASGIApp, host: str, port: int, *, polls: PollAnswerer | None = None,
                   limits: RequestLimits = DEFAULT_LIMITS, **options: Any) -> uvicorn.Config:
    """uvicorn as every swdepot listener runs it (the CLI's, the tests'); ``options`` add to it.

    ``polls`` answers routine polls in the HTTP protocol itself, ``limits`` bound each
    request's head and body (api/protocol.py).
    ``proxy_headers`` is off: uvicorn would otherwise take the client address from any
    local caller's ``X-Forwarded-For``, and failed logins are counted per address.
    """
    protocol = http_protocol(polls, limits)
    defaults: dict[str, Any] = {
        # httptools, each response's writes sent as one (api/protocol.py)
        "loop": "uvloop", "http": protocol, "server_header": False,
        "proxy_headers": False,
        "access_log": False,
        # No WebSocket routes: "auto" would import a WebSocket library at every start.
        "ws": "none",
        # Clients keep connections open; do not let them hold a shutdown up for ever.
        "timeout_graceful_shutdown": 5,
    }
    return uvicorn.Config(app, host=host, port=port, **{**defaults, **options})


def http_protocol(polls: PollAnswerer | None, limits: RequestLimits) -> Any:
    """swdepot's HTTP protocol (api/protocol.py), or uvicorn's own httptools protocol,
    with a warning, if the installed uvicorn lacks an internal the former uses: the
    service then runs without the protocol's poll answers and request limits, but runs.
    """
    try:
        # imported here: a uvicorn that renamed what it imports must not stop the service
        from swdepot.api import protocol
    except ImportError as exc:
        missing: tuple[str, ...] = (str(exc),)
    else:
        missing = protocol.missing_internals()
        if not missing:
            return functools.partial(protocol.CoalescingHttpToolsProtocol, polls=polls,
                                     limits=limits)
    log.warning("uvicorn %s lacks what swdepot's HTTP protocol uses (%s); serving with "
                "uvicorn's own httptools protocol, without request limits or the "
                "protocol's poll answers", uvicorn.__version__, ", ".join(missing))
    return "httptools"


def service_config(service: Service, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn serving ``service``'s app, its polls answered in the protocol."""
    s = service.settings
    limits = RequestLimits(s.max_request_head_bytes, s.request_head_timeout,
                           s.request_body_timeout)
    return uvicorn_config(create_app(service), host, port, polls=PollAnswerer(service),
                          limits=limits, **options)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameters
MMAP_THRESHOLD = 512 << 10
TRIM_THRESHOLD = 2 << 20


def tune_allocator() -> None:
    """Keep TLS reads off ``mmap``: one fewer map, remap and unmap per request.

    uvloop reads TLS records into a fresh 256 KiB bytes object and shrinks it to what
    arrived. glibc serves an allocation that large with ``mmap`` (its threshold starts at
    128 KiB and only grows when such a block is freed at full size, which a shrunk one
    never is), so every request mapped, faulted in, remapped and unmapped fresh pages:
    a fifth of a poll's CPU. A 512 KiB threshold serves it from the heap, where the same
    pages are reused; a 2 MiB trim threshold keeps the heap from being cut back and
    regrown between requests. Costs about 1 MB of resident memory. A no-op without
    glibc's ``mallopt``.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def announce(settings: Settings) -> None:
    """Tell the operator where to go — the web page, the API's documentation, the API —
    in one log line at info level (JSON like every other line, or text on a terminal)."""
    scheme = "https" if settings.tls else "http"
    wildcard = settings.host in ("0.0.0.0", "::", "")
    host = "127.0.0.1" if wildcard else settings.host
    base = f"{scheme}://{f'[{host}]' if ':' in host else host}:{settings.port}"
    log.info("serving on %s/%s: web page %s/, API docs %s/ui/api-docs, REST API "
             "%s/api/cluster (ONTAP's, with Basic auth)", base,
             " (every address of this machine)" if wildcard else "", base, base, base,
             extra={"url": f"{base}/", "api_docs": f"{base}/ui/api-docs"})


@contextlib.contextmanager
def started(settings: Settings, *, prehashed: PendingHash | None = None
            ) -> Iterator[tuple[Service, dict[str, str]]]:
    """The service of ``settings``, recovered and started, with the TLS files its listener
    serves (``ssl_certfile``, ``ssl_keyfile``; none without TLS); closed on exit.

    ``prehashed``: the given admin password's hash, begun before this module's imports.
    The service forks its zygote here, before any thread of its own: call this before
    the server starts threads.
    """
    # first of all: no other live process may serve this node from this data directory
    lock = NodeLock.acquire(settings.data_dir, settings.node)
    cert, key = settings.cert_file, settings.key_file
    try:
        own = (SelfSigned(settings.tls_dir, [settings.host])
               if settings.tls and (cert is None or key is None) else None)
        service = Service(settings, lock=lock)
    except BaseException:
        lock.release()
        raise
    try:
        service.ensure_admin(prehashed=prehashed)
        if prehashed is not None:
            prehashed.result()  # its thread has ended: start() forks with one thread
        service.start()
        ssl_args: dict[str, str] = {}
        if settings.tls:
            if own is not None:
                cert, key = own.wait()
            ssl_args = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        yield service, ssl_args
    finally:
        service.close()


def run(settings: Settings, *, log_level: str = "info",
        prehashed: PendingHash | None = None, **options: Any) -> None:
    """Serve until interrupted; the service is recovered on start and closed on exit.

    ``prehashed``: as for :func:`started`; ``options`` add to uvicorn's configuration
    (bench/servers.py runs uvicorn's own protocol with ``http="httptools"``).
    """
    with started(settings, prehashed=prehashed) as (service, ssl_args):
        config = service_config(service, settings.host, settings.port, log_level=log_level,
                                lifespan="on", log_config=None, **ssl_args, **options)
        config.load()  # builds the SSL context, which is then tightened before serving
        if config.ssl is not None:
            harden(config.ssl)
        tune_allocator()
        announce(settings)
        uvicorn.Server(config).run()
