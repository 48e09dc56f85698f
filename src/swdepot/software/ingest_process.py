"""A download's intake in a process of its own, so the API never shares a GIL with it.

The intake's threads (two store copies, the sha256, the inspector, the pump that takes
blocks from the transfer's child) each take the GIL thousands of times per GiB. In the
service process every one of those hand-overs competes with the event loop: polls of a
running download waited 45 ms at p99 for it, where the same polls answered by a second
process on the same data directory waited 9 ms (docs/performance.md). So the service
forks the intake, and the intake forks the protocol client in turn
(``transfer/process.py``): the event loop's process runs none of a download's threads.

What stays in the service: the job (its progress and state in the job store), the
catalog and the decision to publish. The child only stages, transfers, hashes, inspects
and flushes; it opens no database. It hands the flushed uploads back by their handles
(``BlobStore.adopt``), and the service publishes them as it would its own.

The child is a forked helper as ``swdepot/forked.py`` describes. A shared page, a
``ControlPage``, carries the stop flag (parent to child) and the progress (child to
parent). Messages besides ``L`` and ``X``, child to parent: ``U`` JSON (the handles of
uploads just opened: if the child dies, the parent throws them away), ``T`` size (every
byte is in), ``E`` JSON (the end: the intake, an ONTAP error, or cancelled).
"""

from __future__ import annotations

import gc
import json
import logging
import mmap
import os
import socket
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from swdepot import forked
from swdepot.errors import DOWNLOAD_FAILED, OntapError
from swdepot.jobs.runner import JobContext
from swdepot.packages.model import PackageInfo, PackageKind
from swdepot.priority import lower_this_thread
from swdepot.repository.repository import Repository, Staged
from swdepot.software.ingest import (
    PROCESSING,
    Intake,
    IntakeEvents,
    JobControl,
    record_staged,
    record_validator,
)
from swdepot.transfer.control import (
    IDENTIFIED,
    Control,
    ControlPage,
    ForwardingControl,
    Validator,
    ending,
    failed,
    raise_ending,
)

log = logging.getLogger(__name__)

Take = Callable[[Control, IntakeEvents], Intake]

_POLL_SECONDS = 0.1
_OPENED, _TRANSFERRED, _END = b"U", b"T", b"E"


class IntakeLost(OntapError):
    """The intake's process ended without telling how (killed, crashed)."""

    def __init__(self) -> None:
        failure = failed("the download process ended unexpectedly")
        super().__init__(failure.code, failure.message)


class IngestProcess:
    """Runs an intake in a forked child; same result, same errors as on the job's thread."""

    def __init__(self, repository: Repository, *, nice: int = 0) -> None:
        self._repository = repository
        self._nice = nice  # the child's CPU priority (swdepot/priority.py)

    def run(self, ctx: JobContext, take: Take) -> Intake:
        """Run ``take`` in a child process; the flushed uploads come back adopted."""
        memory = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_SHARED)
        page = ControlPage(memory)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                ours.close()
                _child(take, page, theirs, self._nice)
            theirs.close()
            try:
                return _Waiter(self._repository, ctx, page, ours).run()
            finally:
                forked.reap(pid)
        finally:
            ours.close()
            memory.close()


# --- parent ----------------------------------------------------------------------------


class _Waiter:
    """The job's thread while the child works: relays progress, cancel and log records."""

    def __init__(self, repository: Repository, ctx: JobContext, page: ControlPage,
                 sock: socket.socket) -> None:
        self._repository = repository
        self._ctx = ctx
        self._control = JobControl(ctx)
        self._page = page
        self._sock = sock
        self._opened: list[list[str]] = []  # every set of uploads the child announced

    def run(self) -> Intake:
        for kind, body in forked.messages(self._sock, self._relay, every=_POLL_SECONDS):
            if kind == _OPENED:
                self._opened.append(json.loads(body))
                record_staged(self._ctx, self._opened[-1])
            elif kind == IDENTIFIED:
                validator = Validator.from_json(json.loads(body))
                if validator is not None:
                    record_validator(self._ctx, validator)
            elif kind == _TRANSFERRED:
                size = int(body)
                self._ctx.report(PROCESSING, bytes_done=size, bytes_total=size, force=True)
            elif kind == _END:
                forked.say_goodbye(self._sock)
                return self._end(json.loads(body))
            self._relay()
        # what it staged stays: the job's checkpoint names it, and a new intake may
        # continue from it (software/download.py), or the job removes it when it fails
        raise IntakeLost()

    def _relay(self) -> None:
        """Progress from the page into the job; a cancel of the job onto the page."""
        self._control.progress(*self._page.read_progress())
        if self._control.cancelled:
            self._page.stop()

    def _end(self, result: dict[str, Any]) -> Intake:
        raise_ending(result)
        info = dict(result["info"])
        return Intake(self._repository.adopt(result["handles"]),
                      PackageInfo(**{**info, "kind": PackageKind(info["kind"])}),
                      str(result["sha256"]), int(result["size"]))



# --- child -----------------------------------------------------------------------------


def _child(take: Take, page: ControlPage, sock: socket.socket,
           nice: int) -> None:  # pragma: no cover - runs in the child
    """The child's whole life: run the intake, hand its uploads over, exit."""
    status = 1
    try:
        gc.freeze()  # collections never visit the inherited objects: their pages stay shared
        forked.detach(sock.fileno())
        # the child's only thread: every thread it starts (the sink's workers, the
        # inspector) and the transfer it forks inherit the priority
        lower_this_thread(nice)
        forked.forward_logs(sock)
        result: dict[str, Any]
        try:
            intake = take(ForwardingControl(page, sock), _Messages(sock))
            for upload in intake.staged.uploads:
                upload.detach()
            result = {"handles": [u.handle for u in intake.staged.uploads],
                      "info": {**asdict(intake.info), "kind": intake.info.kind.value},
                      "sha256": intake.sha256, "size": intake.size}
        except OntapError as exc:
            result = ending(exc)
        except Exception:
            log.exception("the download's intake failed unexpectedly")
            result = {"code": DOWNLOAD_FAILED,
                      "message": "Package download failed: internal error."}
        sock.send(_END + json.dumps(result).encode())
        forked.await_goodbye(sock)
        status = 0
    finally:
        os._exit(status)


class _Messages:  # pragma: no cover - runs in the child
    """The intake's events, sent to the parent."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def opened(self, staged: Staged) -> None:
        self._sock.send(_OPENED + json.dumps([u.handle for u in staged.uploads]).encode())

    def transferred(self, size: int) -> None:
        self._sock.send(_TRANSFERRED + str(size).encode())
