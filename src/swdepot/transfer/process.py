"""Transfers in a child process, so the protocol client never shares a GIL with the API.

libcurl hands every 16 KiB to a Python callback: about 65,000 GIL acquisitions per GiB.
In the service process each of them competes with the event loop and with the sink's
own threads, which cost the API its latency and the transfer a third of its speed. So
the fetch runs in a forked child whose only Python thread is the transfer. It gathers
the bytes into blocks of a shared memory ring and names each full block over a socket;
the parent hands the block to the real :class:`~swdepot.transfer.sink.PackageSink`
(store copies, sha256, inspector) without copying it, and gives the slot back once
every consumer is done. Everything stateful stays in the parent: stores, the job, the
repository. The child holds only the URL, the credentials and its ring.

Fork, not spawn: the child starts in milliseconds with everything already imported,
and its pages are shared with the parent (it adds a few MB, not a second interpreter).
The child closes every inherited descriptor but its socket at once, so it cannot keep
the parent's client connections or database files open, dies with the parent
(``PR_SET_PDEATHSIG``), and leaves with ``os._exit``.

Messages (``SOCK_SEQPACKET``, one per datagram), child to parent: ``B`` slot, length
(a filled block); ``R`` (the transfer must start again from zero); ``L`` JSON (a log
record, emitted by the parent's handlers); ``E`` JSON (the
end: success, an ONTAP error, or cancelled). Parent to child: ``F`` slot, generation
(a slot is free again); ``W`` (rewound: every slot is free, a new generation starts);
``X`` (the end was received: the child may exit).
A stop flag in the ring's control page asks the child to end early (cancel, or the
parent's sink failed); the child reads it where the in-process transfer would ask its
:class:`~swdepot.transfer.control.Control`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import mmap
import os
import signal
import socket
import struct
from collections import deque
from typing import Any

from swdepot.errors import DOWNLOAD_FAILED, OntapError
from swdepot.priority import lower_this_thread
from swdepot.transfer.control import Cancelled, Control, failed
from swdepot.transfer.engine import Engine
from swdepot.transfer.sink import BLOCK_SIZE, POOL_BLOCKS, BlockGatherer, PackageSink
from swdepot.transfer.url import Credentials, DownloadUrl

log = logging.getLogger(__name__)

SLOTS = POOL_BLOCKS
_CONTROL = SLOTS * BLOCK_SIZE  # offset of the control page: stop flag, then progress
_STOP = _CONTROL
_PROGRESS = struct.Struct("<qq")  # bytes done, bytes total (-1: unknown)
_PROGRESS_AT = _CONTROL + 8
_SLOT = struct.Struct("<II")
_POLL_SECONDS = 0.1
_PR_SET_PDEATHSIG = 1


class ForkingEngine:
    """Runs an engine's ``fetch`` in a forked child; same signature, same errors."""

    def __init__(self, engine: Engine, *, nice: int = 0) -> None:
        self._engine = engine
        self._nice = nice  # the child's CPU priority (swdepot/priority.py)

    def fetch(self, url: DownloadUrl, credentials: Credentials, sink: PackageSink,
              control: Control) -> None:
        """Stream ``url`` into ``sink``; raises the ONTAP error that ended the transfer."""
        ring = mmap.mmap(-1, _CONTROL + mmap.PAGESIZE, flags=mmap.MAP_SHARED)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                ours.close()
                _child(self._engine, url, credentials, sink.bytes_written, sink.max_bytes,
                       ring, theirs, self._nice)
            theirs.close()
            try:
                _Pump(ring, ours, sink, control).run()
            finally:
                _reap(pid)
        finally:
            ours.close()
            with contextlib.suppress(BufferError):  # a view may outlive a crashed worker
                ring.close()


# --- parent ----------------------------------------------------------------------------


class _Pump:
    """The parent's side: feeds the child's blocks to the sink, returns its slots."""

    def __init__(self, ring: mmap.mmap, sock: socket.socket, sink: PackageSink,
                 control: Control) -> None:
        self._ring = ring
        self._view = memoryview(ring)
        self._sock = sock
        self._sink = sink
        self._control = control
        self._generation = 0
        self._failure: OntapError | None = None

    def run(self) -> None:
        self._sock.settimeout(_POLL_SECONDS)
        try:
            while True:
                try:
                    message = self._sock.recv(4096)
                except TimeoutError:
                    self._watch()
                    continue
                except OSError:
                    message = b""
                if not message:
                    raise failed("the transfer process ended unexpectedly")
                kind, body = message[:1], message[1:]
                if kind == b"B":
                    self._take_block(*_SLOT.unpack(body))
                elif kind == b"R":
                    self._rewind()
                elif kind == b"L":
                    _relog(json.loads(body))
                elif kind == b"E":
                    with contextlib.suppress(OSError):
                        self._sock.send(b"X")  # the child may go: nothing more to say
                    self._end(json.loads(body))
                    return
        finally:
            self._view.release()

    def _watch(self) -> None:
        """After each block and between messages: report progress; pass on a cancel, or
        a failure the sink found on its own, through the ring's stop flag."""
        self._report()
        if self._failure is None:
            self._failure = self._sink.failure()
        if self._failure is not None or self._control.cancelled:
            self._ring[_STOP] = 1

    def _take_block(self, slot: int, length: int) -> None:
        start = slot * BLOCK_SIZE
        generation = self._generation
        if self._failure is None:
            try:
                self._sink.write_block(self._view[start:start + length],
                                       lambda: self._free(slot, generation))
            except OntapError as exc:
                self._failure = exc
        if self._failure is not None:
            self._free(slot, generation)
        self._watch()

    def _report(self) -> None:
        """Progress as the child last saw it (including its partly filled slot)."""
        done, total = _PROGRESS.unpack_from(self._ring, _PROGRESS_AT)
        self._control.progress(done, None if total < 0 else total)

    def _free(self, slot: int, generation: int) -> None:
        """Called by the last sink worker to finish with a block (any thread)."""
        with contextlib.suppress(OSError):  # the child may already be gone
            self._sock.send(b"F" + _SLOT.pack(slot, generation))

    def _rewind(self) -> None:
        self._sink.rewind()
        self._generation += 1
        self._sock.send(b"W")

    def _end(self, result: dict[str, Any]) -> None:
        if self._failure is not None:
            raise self._failure
        if result.get("cancelled"):
            raise Cancelled()
        if "code" in result:
            raise OntapError(int(result["code"]), str(result["message"]))


def _relog(fields: dict[str, Any]) -> None:
    """Emit a record the child logged through this process's handlers (and formats)."""
    record = logging.makeLogRecord(fields)
    logging.getLogger(record.name).handle(record)


def _reap(pid: int) -> None:
    """Wait for the child; kill it first if it is still running (the parent gave up)."""
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


# --- child -----------------------------------------------------------------------------


def _child(engine: Engine, url: DownloadUrl, credentials: Credentials, offset: int,
           max_bytes: int, ring: mmap.mmap, sock: socket.socket,
           nice: int) -> None:  # pragma: no cover
    """The child's whole life: fetch into the ring, report how it ended, exit."""
    status = 1
    try:
        gc.disable()  # a collection would write to every object's page: copies of them all
        _detach(sock.fileno())
        lower_this_thread(nice)  # the child's only thread
        _forward_logs(sock)
        sink = _RingSink(ring, sock, offset, max_bytes)
        result: dict[str, Any] = {"ok": True}
        try:
            engine.fetch(url, credentials, sink, _RingControl(ring))
            sink.flush()
        except Cancelled:
            result = {"cancelled": True}
        except OntapError as exc:
            result = {"code": exc.code, "message": exc.message}
        except Exception:
            log.exception("the transfer of %s failed unexpectedly", url.url)
            result = {"code": DOWNLOAD_FAILED,
                      "message": "Package download failed: internal error in the transfer."}
        sock.send(b"E" + json.dumps(result).encode())
        _await_goodbye(sock)
        status = 0
    finally:
        os._exit(status)


def _await_goodbye(sock: socket.socket) -> None:  # pragma: no cover - runs in the child
    """Read until the parent's ``X``: a socket closed with unread messages in it would
    reset the connection, and the parent could lose the ``E`` still queued for it."""
    sock.settimeout(10.0)
    with contextlib.suppress(OSError):
        while (message := sock.recv(64)) and message != b"X":
            pass


def _detach(keep: int) -> None:  # pragma: no cover - runs in the child
    """Drop every inherited descriptor but ``keep`` (and stdio); die with the parent."""
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the line above took effect
        os._exit(1)


class _LogForwarder(logging.Handler):  # pragma: no cover - runs in the child
    """Sends each record to the parent, which emits it: one log stream, one format."""

    MAX_MESSAGE = 16 * 1024

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {"name": record.name, "levelno": record.levelno,
                      "levelname": record.levelname, "msg": record.getMessage()[:self.MAX_MESSAGE],
                      "pathname": record.pathname, "lineno": record.lineno,
                      "funcName": record.funcName, "created": record.created,
                      "exc_text": (self.formatter or logging.Formatter()).formatException(
                          record.exc_info) if record.exc_info else None}
            self._sock.send(b"L" + json.dumps(fields).encode())
        except Exception:
            self.handleError(record)


def _forward_logs(sock: socket.socket) -> None:  # pragma: no cover - runs in the child
    """Route every record to the parent instead of the handlers inherited from it (their
    files and locks belong to the parent)."""
    forwarder = _LogForwarder(sock)
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers = [forwarder] if logger is logging.getLogger() else []


class _RingControl:  # pragma: no cover - runs in the child
    """The child's Control: the parent's stop flag, and progress written to the ring."""

    def __init__(self, ring: mmap.mmap) -> None:
        self._ring = ring

    @property
    def cancelled(self) -> bool:
        return self._ring[_STOP] != 0

    def progress(self, done: int, total: int | None) -> None:
        _PROGRESS.pack_into(self._ring, _PROGRESS_AT, done, -1 if total is None else total)


class _RingSink(BlockGatherer):  # pragma: no cover - runs in the child
    """The child's sink: gathers bytes into ring slots and names each full one."""

    def __init__(self, ring: mmap.mmap, sock: socket.socket, offset: int,
                 max_bytes: int) -> None:
        super().__init__(max_bytes, offset)
        self._ring = ring
        self._sock = sock
        self._free: deque[int] = deque(range(SLOTS))
        self._generation = 0
        self._slot: int | None = None

    def _check(self) -> None:
        if self._ring[_STOP]:
            raise Cancelled()

    def _pass_on(self) -> None:
        """Hand the current slot to the parent, however full it is."""
        if self._slot is not None and self._filled:
            self._sock.send(b"B" + _SLOT.pack(self._slot, self._filled))
            self._slot = self._target = None

    flush = _pass_on

    def _open_block(self) -> None:
        """The next free slot, waiting for the parent to return one (back-pressure)."""
        self._receive(block=not self._free)
        while not self._free:
            if self._ring[_STOP]:
                raise Cancelled()
            self._receive(block=True)
        self._slot = self._free.popleft()
        self._target, self._block_start, self._filled = self._ring, self._slot * BLOCK_SIZE, 0

    def _receive(self, *, block: bool) -> None:
        """Collect the parent's messages: freed slots and rewind acknowledgements."""
        self._sock.settimeout(_POLL_SECONDS if block else 0.0)
        while True:
            try:
                message = self._sock.recv(64)
            except (BlockingIOError, TimeoutError):
                return
            if not message:
                os._exit(1)  # the parent is gone
            if message[:1] == b"F":
                slot, generation = _SLOT.unpack(message[1:])
                if generation == self._generation:
                    self._free.append(slot)
            elif message[:1] == b"W":
                return
            if block:
                return

    def rewind(self) -> None:
        """Start again from zero: the parent throws its copies away, every slot is free."""
        self._slot = None
        self._sock.send(b"R")
        self._sock.settimeout(None)
        while (message := self._sock.recv(64)) != b"W":
            if not message:
                os._exit(1)
        self._generation += 1
        self._free = deque(range(SLOTS))
        self._restart(0)
