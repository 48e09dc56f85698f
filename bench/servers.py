"""``swdepot serve`` under other HTTP servers, for bench/api_load.py's side-by-side rows
(issue 19: the API-under-load figures without reaching into a server's internals).

    python bench/servers.py SERVER serve [swdepot serve's options]

The settings, the service, its start (the zygote forked before any thread) and its
close are swdepot's own (``cli.main``, ``server.started``); only what listens differs,
each through its public interface, and each serves ``create_app``'s app, polls answered
by the ASGI-level :class:`~swdepot.api.shortcut.PollShortcut`:

- ``uvicorn``: uvicorn as ``swdepot serve`` runs it (uvloop, hardened TLS, the allocator
  setting) but with its own httptools protocol (``http="httptools"``) instead of
  api/protocol.py's subclass.
- ``granian``: granian's standard server, one worker process, over TLS with the same
  certificate (rustls; TLS 1.2 and newer, whose suites are all forward-secret AEAD, as
  ``tls.harden`` asks of OpenSSL). The service is built in the worker, by the app factory,
  which granian calls before its runtime starts threads; it is closed after the app's
  lifespan shutdown.

The process that serves (granian's worker, else this one) writes its pid to
``$SWDEPOT_BENCH_PID_FILE`` if that is set, so the benchmark reads that process's CPU.
Needs the ``bench`` extra (``pip install -e '.[bench]'``) for granian.

hypercorn was tried too and is not here: h2load counts none of its answers (h11 sends
``HTTP/1.1 200`` with an empty reason phrase, whose status h2load logs as 0), so the
benchmark cannot measure it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from swdepot.api.app import create_app
from swdepot.auth import PendingHash
from swdepot.cli import main as swdepot_main
from swdepot.config import Settings
from swdepot.server import run, started, tune_allocator
from swdepot.tls import SelfSigned

PID_FILE = "SWDEPOT_BENCH_PID_FILE"


def _serving_here() -> None:
    if path := os.environ.get(PID_FILE):
        Path(path).write_text(str(os.getpid()))


def run_uvicorn(settings: Settings, *, log_level: str = "info",
                prehashed: PendingHash | None = None) -> None:
    _serving_here()
    run(settings, log_level=log_level, prehashed=prehashed, http="httptools")


# --- granian: the service lives in the worker process --------------------------------------

_WORKER: dict[str, Any] = {}  # what the worker's factory needs, inherited through fork


def granian_app() -> Callable[..., Awaitable[None]]:
    """granian's app factory, in its worker: the started service's app."""
    stack = contextlib.ExitStack()
    if threads := len(os.listdir("/proc/self/task")) - 1:
        print(f"servers.py: {threads} other threads before the service forks its zygote",
              file=sys.stderr)
    service, _tls = stack.enter_context(started(_WORKER["settings"],
                                                prehashed=_WORKER["prehashed"]))
    tune_allocator()
    _serving_here()
    app = create_app(service)

    async def closing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The app; the service closed once the app's lifespan has shut down."""
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                stack.close()
            await send(message)

        return await app(scope, receive, sending)

    return closing


def run_granian(settings: Settings, *, log_level: str = "info",
                prehashed: PendingHash | None = None) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
    from granian.log import LogLevels

    # the worker is forked from this process and reads _WORKER: no spawn or forkserver
    assert multiprocessing.get_start_method() == "fork"
    if prehashed is not None:
        prehashed.result()  # its thread ends before granian forks
    if settings.tls and (settings.cert_file is None or settings.key_file is None):
        cert, key = SelfSigned(settings.tls_dir, [settings.host]).wait()
        settings = dataclasses.replace(settings, cert_file=cert, key_file=key)
    _WORKER.update(settings=settings, prehashed=prehashed)
    sys.modules.setdefault("servers", sys.modules[__name__])
    Granian(
        "servers:granian_app", factory=True, address=settings.host, port=settings.port,
        interface=Interfaces.ASGI, workers=1, loop=Loops.uvloop,
        http=HTTPModes.http1,  # as swdepot serve: HTTP/1.1 only
        websockets=False, log_level=LogLevels(log_level), log_access=False,
        workers_kill_timeout=10,
        ssl_cert=settings.cert_file if settings.tls else None,
        ssl_key=settings.key_file if settings.tls else None,
        ssl_protocol_min=SSLProtocols.tls12,
    ).serve()


SERVERS = {"uvicorn": run_uvicorn, "granian": run_granian}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in SERVERS:
        print(__doc__)
        return 2
    return swdepot_main(sys.argv[2:], serve=SERVERS[sys.argv[1]])


if __name__ == "__main__":
    raise SystemExit(main())
