"""Transfers in a child process, so the protocol client never shares a GIL with the sink.

libcurl hands every 16 KiB to a Python callback: about 65,000 GIL acquisitions per GiB.
Sharing a process with the sink's own threads (and, before the intake had a process
of its own, with the event loop), each of them waited, which cost the transfer a third
of its speed. So the fetch runs in a forked child whose only Python thread is the
transfer. It gathers the bytes into blocks of a shared memory ring and names each full
block over a socket; the parent (the download's worker process,
``software/ingest_process.py``) hands the block to the real
:class:`~swdepot.transfer.sink.PackageSink` (store copies, sha256, inspector) without
copying it, and gives the slot back once every consumer is done. The child holds only
the URL, the credentials and its ring.

The child is forked by :meth:`ForkingEngine.prepare` *before* the parent starts the
sink's threads (a worker runs one intake at a time and has only its main thread
between them), and waits for the offset to start from. It is a forked helper as
``swdepot/forked.py`` describes (detached, logging through the parent, ending with
``os._exit``). Messages besides that module's ``L`` and ``X``, child to parent: ``B``
slot, length (a filled block); ``R`` (the transfer must start again from zero); ``V``
JSON (the validator of the file, from the first response); ``E`` JSON (the end:
success, an ONTAP error, or cancelled). Parent to child: ``G`` offset (start, after
the bytes the sink already holds); ``F`` slot, generation (a slot is free again); ``W``
(rewound: every slot is free, a new generation starts).
The ring's last page is a :class:`~swdepot.transfer.control.ControlPage`: its stop flag
asks the child to end early (cancel, or the parent's sink failed), and the child's
progress is read from it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import mmap
import os
import socket
import struct
from collections import deque
from typing import Any

from swdepot import forked
from swdepot.errors import DOWNLOAD_FAILED, OntapError
from swdepot.priority import lower_this_thread
from swdepot.transfer.control import (
    IDENTIFIED,
    RETRYING,
    Cancelled,
    Control,
    ControlPage,
    ForwardingControl,
    ProcessLost,
    Validator,
    ending,
    raise_ending,
    retry_note,
)
from swdepot.transfer.engine import Engine
from swdepot.transfer.sink import BLOCK_SIZE, POOL_BLOCKS, BlockGatherer, PackageSink
from swdepot.transfer.url import Credentials, DownloadUrl

log = logging.getLogger(__name__)

SLOTS = POOL_BLOCKS
_CONTROL = SLOTS * BLOCK_SIZE  # offset of the control page (ControlPage: stop, progress)
_SLOT = struct.Struct("<II")
_POLL_SECONDS = 0.1
_GO = b"G"


class TransferLost(ProcessLost):
    """The transfer's process ended without telling how (killed, crashed): what it had
    handed over is staged, and a new intake may continue from it."""

    what = "transfer process"


class ForkingEngine:
    """Runs an engine's ``fetch`` in a forked child, forked before the caller starts
    any thread (:meth:`prepare`); same errors as the engine."""

    def __init__(self, engine: Engine, *, nice: int = 0) -> None:
        self._engine = engine
        self._nice = nice  # the child's CPU priority (swdepot/priority.py)

    def prepare(self, url: DownloadUrl, credentials: Credentials, *, max_bytes: int,
                known: Validator | None = None) -> PreparedTransfer:
        """Fork the child now, while the caller still has one thread; it fetches once
        the returned transfer is run with a sink (:meth:`PreparedTransfer.__call__`)."""
        ring = mmap.mmap(-1, _CONTROL + mmap.PAGESIZE, flags=mmap.MAP_SHARED)
        page = ControlPage(ring, _CONTROL)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = forked.fork()
        except BaseException:
            ours.close()
            theirs.close()
            ring.close()
            raise
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            ours.close()
            _child(self._engine, url, credentials, known, max_bytes, ring, page, theirs,
                   self._nice)
        theirs.close()
        return PreparedTransfer(pid, ring, page, ours)


class PreparedTransfer:
    """A forked transfer waiting for its sink: run it once (it is a ``Feed``), or close
    it unused; either way the child is reaped."""

    def __init__(self, pid: int, ring: mmap.mmap, page: ControlPage,
                 sock: socket.socket) -> None:
        self.pid = pid
        self._ring = ring
        self._page = page
        self._sock = sock

    def __call__(self, sink: PackageSink, control: Control) -> None:
        """Stream into ``sink`` from ``sink.bytes_written`` on; raises the ONTAP error
        that ended the transfer, :class:`TransferLost` if its process died."""
        try:
            self._sock.send(_GO + str(sink.bytes_written).encode())
        except OSError:
            raise TransferLost() from None
        try:
            _Pump(self._ring, self._page, self._sock, sink, control).run()
        finally:
            self.close()

    def close(self) -> None:
        forked.reap(self.pid)
        self._sock.close()
        with contextlib.suppress(BufferError):  # a view may outlive a crashed worker
            self._ring.close()


# --- parent ----------------------------------------------------------------------------


class _Pump:
    """The parent's side: feeds the child's blocks to the sink, returns its slots."""

    def __init__(self, ring: mmap.mmap, page: ControlPage, sock: socket.socket,
                 sink: PackageSink, control: Control) -> None:
        self._page = page
        self._view = memoryview(ring)
        self._sock = sock
        self._sink = sink
        self._control = control
        self._generation = 0
        self._failure: OntapError | None = None

    def run(self) -> None:
        try:
            for kind, body in forked.messages(self._sock, self._watch, every=_POLL_SECONDS,
                                              size=4096):
                if kind == b"B":
                    self._take_block(*_SLOT.unpack(body))
                elif kind == b"R":
                    self._rewind()
                elif kind == IDENTIFIED:
                    validator = Validator.from_json(json.loads(body))
                    if validator is not None:
                        self._control.source_identified(validator)
                elif kind == RETRYING:
                    self._control.retrying(retry_note(body))
                elif kind == b"E":
                    forked.say_goodbye(self._sock)
                    self._end(json.loads(body))
                    return
            raise TransferLost()
        finally:
            self._view.release()

    def _watch(self) -> None:
        """After each block and between messages: report progress; pass on a cancel, or
        a failure the sink found on its own, through the ring's stop flag."""
        self._report()
        if self._failure is None:
            self._failure = self._sink.failure()
        if self._failure is not None or self._control.cancelled:
            self._page.stop()

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
        self._control.progress(*self._page.read_progress())

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
        raise_ending(result)


# --- child -----------------------------------------------------------------------------


def _child(engine: Engine, url: DownloadUrl, credentials: Credentials,
           known: Validator | None, max_bytes: int, ring: mmap.mmap,
           page: ControlPage, sock: socket.socket,
           nice: int) -> None:  # pragma: no cover
    """The child's whole life: wait for the offset to start from, fetch into the ring,
    report how it ended, exit."""
    status = 1
    try:
        gc.disable()  # a collection would write to every object's page: copies of them all
        forked.detach(sock.fileno())
        lower_this_thread(nice)  # the child's only thread
        forked.forward_logs(sock)
        go = sock.recv(64)
        if not go.startswith(_GO):
            return  # closed unused
        sink = _RingSink(ring, page, sock, int(go[1:]), max_bytes)
        result: dict[str, Any] = {"ok": True}
        try:
            engine.fetch(url, credentials, sink, ForwardingControl(page, sock), known=known)
            sink.flush()
        except OntapError as exc:
            result = ending(exc)
        except Exception:
            log.exception("the transfer of %s failed unexpectedly", url.url)
            result = {"code": DOWNLOAD_FAILED,
                      "message": "Package download failed: internal error in the transfer."}
        sock.send(b"E" + json.dumps(result).encode())
        forked.await_goodbye(sock)
        status = 0
    finally:
        os._exit(status)



class _RingSink(BlockGatherer):  # pragma: no cover - runs in the child
    """The child's sink: gathers bytes into ring slots and names each full one."""

    def __init__(self, ring: mmap.mmap, page: ControlPage, sock: socket.socket, offset: int,
                 max_bytes: int) -> None:
        super().__init__(max_bytes, offset)
        self._ring = ring
        self._page = page
        self._sock = sock
        self._free: deque[int] = deque(range(SLOTS))
        self._generation = 0
        self._slot: int | None = None

    def _check(self) -> None:
        if self._page.cancelled:
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
            if self._page.cancelled:
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
