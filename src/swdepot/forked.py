"""What every forked helper process of the service does: detach, log through its parent, end.

A download runs in two such processes (``software/intake.py``, ``transfer/process.py``).
Fork, not spawn: a child starts in milliseconds with everything already imported, and
its pages stay shared with the parent. Each child closes every inherited descriptor but
its own socket at once, so it cannot keep the parent's client connections or database
files open; dies with its parent (``PR_SET_PDEATHSIG``); sends its log records to the
parent, whose handlers emit them (one log stream, one format); and leaves with
``os._exit``, so none of the parent's exit handlers run twice.

Messages between a parent and its child are datagrams on a ``SOCK_SEQPACKET`` socket
pair, one message each, a kind byte first: ``L`` JSON (a log record), ``X`` (parent to
child: the end was received, the child may exit). Each child adds kinds of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import logging.handlers
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

from swdepot.logs import REQUEST_ID

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
LOG = b"L"
GOODBYE = b"X"


def _descriptors() -> dict[int, tuple[int, int]]:
    """This process's open descriptors, each with the (device, inode) it refers to."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone
            stat = os.fstat(int(name))
            found[int(name)] = (stat.st_dev, stat.st_ino)
    return found


_made_at_fork: set[int] = set()


def fork() -> int:
    """``os.fork``, remembering in the child which descriptors a library's at-fork
    handler made there, so that :func:`detach` keeps them.

    libuv (under uvloop) registers such a handler once a loop has run in the process:
    in every child it closes the descriptor numbers of its signal pipe and opens a new
    one. Those numbers are stale in a child that detached (another file may have them by
    then), so the handler would close a descriptor of ours, unless the pipe it made the
    fork before was kept. The service forks its zygote before its loop starts; this is
    for a process that embeds a service after running a loop (a test suite).
    """
    global _made_at_fork
    before = _descriptors() if os.path.isdir("/proc/self/fd") else {}
    pid = os.fork()
    if pid == 0 and before:  # pragma: no cover - runs in the child
        _made_at_fork = {fd for fd, ident in _descriptors().items()
                         if before.get(fd) != ident}
    return pid


def detach(*keep: int) -> None:  # pragma: no cover - runs in a child
    """Drop every inherited descriptor but ``keep`` (and stdio, and what at-fork handlers
    made: :func:`fork`); die with the parent."""
    start = 3
    for fd in sorted({*keep, *_made_at_fork}):
        os.closerange(start, fd)
        start = max(start, fd + 1)
    os.closerange(start, os.sysconf("SC_OPEN_MAX"))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the line above took effect
        os._exit(1)


def become_subreaper() -> None:  # pragma: no cover - runs in the zygote
    """Orphaned descendants (a dead worker's transfer) become this process's children,
    for it to reap, instead of init's (which in a container may never reap them)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)


MAX_MESSAGE = 16 * 1024  # characters of a message that travel; the rest is cut


def _to_wire(record: logging.LogRecord, exc_text: str | None = None) -> bytes:
    """A record as an ``L`` message, whichever way it travels (:func:`_from_wire`)."""
    fields = {"name": record.name, "levelno": record.levelno,
              "levelname": record.levelname, "msg": record.getMessage()[:MAX_MESSAGE],
              "pathname": record.pathname, "filename": record.filename,
              "module": record.module, "lineno": record.lineno,
              "funcName": record.funcName, "created": record.created,
              "process": record.process, "threadName": record.threadName,
              "exc_text": exc_text,
              # the request that started the work (logs.py), for its lines
              "request_id": getattr(record, "request_id", None) or REQUEST_ID.get()}
    return LOG + json.dumps(fields).encode()


def _from_wire(body: bytes) -> logging.LogRecord:
    """The record an ``L`` message carries (without its kind byte)."""
    fields: dict[str, Any] = json.loads(body)
    return logging.makeLogRecord(fields)


class LogForwarder(logging.Handler):  # pragma: no cover - runs in a child
    """Sends each record to the parent, which emits it: one log stream, one format."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc_text = ((self.formatter or logging.Formatter()).formatException(
                record.exc_info) if record.exc_info else None)
            self._sock.send(_to_wire(record, exc_text))
        except Exception:
            self.handleError(record)


def forward_logs(sock: socket.socket) -> None:  # pragma: no cover - runs in a child
    """Route every record to the parent instead of the handlers inherited from it (their
    files and locks belong to the parent)."""
    forwarder = LogForwarder(sock)
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers = [forwarder] if logger is logging.getLogger() else []


def messages(sock: socket.socket, idle: Callable[[], None], *, every: float = 0.1,
             size: int = 65536) -> Iterator[tuple[bytes, bytes]]:
    """The child's messages as (kind, body); log records (``L``) are emitted here first,
    and passed on too, for callers that act after every message.

    ``idle`` runs whenever ``every`` seconds pass without a message (progress, cancel).
    The iteration ends when the child is gone: its socket closed or broken.
    """
    sock.settimeout(every)
    while True:
        try:
            message = sock.recv(size)
        except TimeoutError:
            idle()
            continue
        except OSError:
            return
        if not message:
            return
        kind, body = message[:1], message[1:]
        if kind == LOG:
            relog(body)
        yield kind, body


def relog(body: bytes) -> None:
    """Emit a record a child logged through this process's handlers (and formats)."""
    record = _from_wire(body)
    logging.getLogger(record.name).handle(record)


def await_goodbye(sock: socket.socket) -> None:  # pragma: no cover - runs in a child
    """Read until the parent's ``X``: a socket closed with unread messages in it would
    reset the connection, and the parent could lose the last message still queued."""
    sock.settimeout(10.0)
    with contextlib.suppress(OSError):
        while (message := sock.recv(64)) and message != GOODBYE:
            pass


def say_goodbye(sock: socket.socket) -> None:
    """Tell the child its last message arrived: it may exit now."""
    with contextlib.suppress(OSError):
        sock.send(GOODBYE)


def reap(pid: int) -> None:
    """Wait for the child; kill it first if it is still running (the parent gave up)."""
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


class LogChannel:
    """Log records from worker processes to the service: the queue of the standard
    library's :class:`~logging.handlers.QueueHandler` (in the workers, which may be
    many: datagrams never interleave) and :class:`~logging.handlers.QueueListener` (in
    the service, whose handlers emit them: one log stream, one format)."""

    _STOP = b"-"

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def writer_fd(self) -> int:
        """The descriptor a worker writes to (inherited through the zygote)."""
        return self._writer.fileno()

    def put_nowait(self, record: logging.LogRecord | None) -> None:
        """A worker's record, already prepared by the QueueHandler; ``None`` (the
        listener's sentinel, put by the service) ends the listener."""
        if record is None:
            self._writer.send(self._STOP)
            return
        with contextlib.suppress(OSError):  # the service is gone: nobody to log to
            self._writer.send(_to_wire(record))

    def get(self, block: bool = True) -> logging.LogRecord | None:
        """The next record (service side); ``None`` once the channel is stopped."""
        message = self._reader.recv(MAX_MESSAGE + 4096)
        if not message.startswith(LOG):
            return None
        return _from_wire(message[1:])

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class _Relog(logging.Handler):
    """The listener's one handler: a worker's record goes to its own logger's handlers."""

    def handle(self, record: logging.LogRecord) -> bool:
        logging.getLogger(record.name).handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does it
        self.handle(record)


def listen(channel: LogChannel) -> logging.handlers.QueueListener:
    """Start emitting what the workers log through ``channel`` (service side)."""
    listener = logging.handlers.QueueListener(channel, _Relog())
    listener.start()
    return listener


def log_to(channel: LogChannel) -> None:  # pragma: no cover - runs in a worker
    """Route every record of this worker to the service (the handlers inherited from it
    hold its files and locks)."""
    handler = logging.handlers.QueueHandler(channel)
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers = [handler] if logger is logging.getLogger() else []
