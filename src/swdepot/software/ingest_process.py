"""A package's intake in a worker process, so the API never shares a GIL with it.

The intake's threads (two store copies, the sha256, the inspector, the pump that takes
blocks from the transfer's child) each take the GIL thousands of times per GiB. In the
service process every one of those hand-overs competes with the event loop: polls of a
running download waited 45 ms at p99 for it, where the same polls answered by a second
process on the same data directory waited 9 ms (docs/performance.md). So the intake
runs in one of the service's worker processes (``workers.py``), and the worker forks
the protocol client (``transfer/process.py``) before it starts any of the intake's
threads: the event loop's process runs none of a download's threads, and nothing forks
a process that runs threads.

What stays in the service: the job (its progress and state in the job store), the
catalog and the decision to publish. The worker only stages, transfers, hashes,
inspects and flushes; it opens no database. It hands the flushed uploads back by their
handles (``BlobStore.adopt``), and the service publishes them as it would its own.

Service to worker: ``J`` JSON (the task, as ``DownloadService.intake`` or
``UploadService.intake`` reads it: a download's row holds everything, the password only
sealed); for an upload, whose bytes arrive in this process's request, ``D`` bytes (the
next piece of the body) and ``Z`` (its end); ``X`` (the end was received).
The worker's :class:`~swdepot.transfer.control.ControlPage` carries the stop flag
(service to worker) and the progress (worker to service). Worker to service: ``U`` JSON
(the handles of uploads just opened: if the worker dies, the job's checkpoint names
them), ``V`` JSON (the validator of the file), ``T`` size (every byte is in), ``E``
JSON (the end: the intake, an ONTAP error, cancelled, or ``lost``: its transfer's
process died, and a new intake may continue from what was staged).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import select
import socket
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from swdepot import forked
from swdepot.errors import DOWNLOAD_FAILED, OntapError
from swdepot.jobs.runner import JobContext
from swdepot.logs import REQUEST_ID
from swdepot.packages.model import PackageInfo, PackageKind
from swdepot.priority import lower_this_thread
from swdepot.repository.repository import Repository, Staged
from swdepot.software.ingest import (
    PROCESSING,
    ContextControl,
    Intake,
    IntakeEvents,
    record_staged,
    record_validator,
)
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
from swdepot.transfer.process import TransferLost
from swdepot.workers import NoWorker, WorkerPool

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.1
_TASK, _DATA, _EOF = b"J", b"D", b"Z"
_OPENED, _TRANSFERRED, _END = b"U", b"T", b"E"
_PIECE = 64 << 10  # bytes of a body in one message


class IntakeLost(ProcessLost):
    """The intake's process ended without telling how (killed, crashed), or its
    transfer's did: a new intake may continue from what the job's checkpoint names."""

    what = "download process"


class IntakeWorkers:
    """Runs intakes in the pool's worker processes; same result, same errors as on the
    job's thread."""

    def __init__(self, repository: Repository, pool: WorkerPool) -> None:
        self._repository = repository
        self._pool = pool

    def run(self, ctx: JobContext, task: dict[str, Any],
            body: Iterable[bytes] | None = None) -> Intake:
        """Run ``task`` in a worker; the flushed uploads come back adopted.

        ``body``: the package's bytes, for an intake whose bytes this process receives
        (an upload); they are sent to the worker as they come. If reading them fails,
        the worker is stopped, and that failure is raised once it has ended."""
        failure: BaseException | None = None
        try:
            with self._pool.lend(lambda: ctx.cancelled) as worker:
                worker.page.reset()
                task = {**task, "request_id": REQUEST_ID.get()}  # for the worker's log lines
                try:
                    worker.sock.send(_TASK + json.dumps(task).encode())
                except OSError:
                    raise IntakeLost() from None
                waiter = _Waiter(ctx, worker.page, worker.sock)
                if body is not None:
                    failure = waiter.feed(body)
                result = waiter.run()
        except NoWorker:
            if ctx.cancelled:
                raise Cancelled() from None
            raise OntapError(DOWNLOAD_FAILED, "Package download failed: no worker process "
                             "could be started.") from None
        if failure is not None:
            raise failure
        return self._end(result)

    def _end(self, result: dict[str, Any]) -> Intake:
        if result.get("lost"):
            raise IntakeLost()
        if result.get("internal"):
            raise RuntimeError("the intake failed unexpectedly in its worker process")
        raise_ending(result)
        info = dict(result["info"])
        return Intake(self._repository.adopt(result["handles"]),
                      PackageInfo(**{**info, "kind": PackageKind(info["kind"])}),
                      str(result["sha256"]), int(result["size"]))


# --- service ---------------------------------------------------------------------------


class _Waiter:
    """The job's thread while the worker works: relays progress, cancel and what the
    worker reports; sends it the body, if this process receives one."""

    def __init__(self, ctx: JobContext, page: ControlPage, sock: socket.socket) -> None:
        self._ctx = ctx
        self._control = ContextControl(ctx)
        self._page = page
        self._sock = sock
        self._ended: dict[str, Any] | None = None

    def run(self) -> dict[str, Any]:
        """The worker's ending (JSON); :class:`IntakeLost` if it died first."""
        if self._ended is not None:
            return self._ended
        for kind, body in forked.messages(self._sock, self._relay, every=_POLL_SECONDS):
            self._take(kind, body)
            if self._ended is not None:
                return self._ended
            self._relay()
        # what it staged stays: the job's checkpoint names it, and a new intake may
        # continue from it (software/download.py), or the job removes it when it fails
        raise IntakeLost()

    def feed(self, body: Iterable[bytes]) -> BaseException | None:
        """Send the body's bytes (``D``, then ``Z``) while taking the worker's messages;
        stops early if the worker ended. What reading the body raised, if it did (the
        worker is asked to stop, and ends as cancelled)."""
        try:
            for chunk in body:
                for start in range(0, len(chunk), _PIECE):
                    if not self._send(_DATA + chunk[start:start + _PIECE]):
                        return None
                self._poll()
                self._relay()
            self._send(_EOF)
        except IntakeLost:
            raise
        except BaseException as exc:
            self._page.stop()
            return exc
        return None

    def _send(self, message: bytes) -> bool:
        """Send one message, waiting while the worker is behind; False once it ended."""
        self._sock.settimeout(_POLL_SECONDS)
        while self._ended is None:
            try:
                self._sock.send(message)
                return True
            except TimeoutError:
                self._poll()
                self._relay()
            except OSError:
                raise IntakeLost() from None
        return False

    def _poll(self) -> None:
        """Take whatever the worker has sent, without waiting."""
        while self._ended is None:
            try:
                readable, _, _ = select.select([self._sock], [], [], 0)
                if not readable:
                    return
                message = self._sock.recv(65536)
            except OSError:
                raise IntakeLost() from None
            if not message:
                raise IntakeLost()
            if message[:1] == forked.LOG:
                forked.relog(message[1:])
            self._take(message[:1], message[1:])

    def _take(self, kind: bytes, body: bytes) -> None:
        if kind == _OPENED:
            record_staged(self._ctx, json.loads(body))
        elif kind == IDENTIFIED:
            validator = Validator.from_json(json.loads(body))
            if validator is not None:
                record_validator(self._ctx, validator)
        elif kind == RETRYING:
            self._control.retrying(retry_note(body))
        elif kind == _TRANSFERRED:
            size = int(body)
            self._ctx.report(PROCESSING, bytes_done=size, bytes_total=size, force=True)
        elif kind == _END:
            forked.say_goodbye(self._sock)
            self._ended = json.loads(body)

    def _relay(self) -> None:
        """Progress from the page into the job; a cancel of the job onto the page."""
        self._control.progress(*self._page.read_progress())
        if self._control.cancelled:
            self._page.stop()


# --- worker ---------------------------------------------------------------------------

Body = Callable[[], "bytes | None"]  # the next piece of the service's body; None at its end
TaskIntake = Callable[[dict[str, Any], Control, IntakeEvents, Body], Intake]


def intake_role(take: TaskIntake, channel: forked.LogChannel, *, nice: int = 0
                ) -> Callable[[list[int], dict[str, object]], None]:
    """The zygote's role for an intake worker: ``take`` runs each task it is sent
    (``body`` reads the bytes the service sends, for an intake that has them)."""

    def role(fds: list[int], args: dict[str, object]) -> None:  # pragma: no cover
        _serve(take, channel, nice, fds)

    return role


def _serve(take: TaskIntake, channel: forked.LogChannel, nice: int,
           fds: list[int]) -> None:  # pragma: no cover - runs in a worker
    """The worker's whole life: one task after another, until the service lets go."""
    sock = socket.socket(fileno=fds[0])
    memory = mmap.mmap(fds[1], mmap.PAGESIZE)  # holds a descriptor of its own
    os.close(fds[1])
    page = ControlPage(memory)
    # the worker's only thread: every thread it starts (the sink's workers, the
    # inspector) and the transfer it forks inherit the priority
    lower_this_thread(nice)
    forked.log_to(channel)
    while True:
        sock.settimeout(None)  # idle until the next task, or until the service lets go
        message = sock.recv(1 << 16)
        if not message:
            return
        if message[:1] != _TASK:
            continue
        result = _one(take, json.loads(message[1:]), page, sock)
        sock.send(_END + json.dumps(result).encode())
        forked.await_goodbye(sock)


def _one(take: TaskIntake, task: dict[str, Any], page: ControlPage,
         sock: socket.socket) -> dict[str, Any]:  # pragma: no cover - runs in a worker
    """Run one intake; how it ended, as the service reads it."""
    token = REQUEST_ID.set(task.get("request_id"))
    try:
        intake = take(task, ForwardingControl(page, sock), _Messages(sock), _Body(sock, page))
        for upload in intake.staged.uploads:
            upload.detach()
        return {"handles": [u.handle for u in intake.staged.uploads],
                "info": {**asdict(intake.info), "kind": intake.info.kind.value},
                "sha256": intake.sha256, "size": intake.size}
    except TransferLost:
        log.warning("the transfer process of a download died; its intake ends")
        return {"lost": True}
    except OntapError as exc:
        return ending(exc)
    except Exception:
        log.exception("an intake failed unexpectedly")
        return {"internal": True}
    finally:
        REQUEST_ID.reset(token)


class _Body:  # pragma: no cover - runs in a worker
    """Reads the body the service sends (``D`` pieces, ``Z`` at the end); raises
    :class:`Cancelled` once the service stops the intake."""

    def __init__(self, sock: socket.socket, page: ControlPage) -> None:
        self._sock = sock
        self._page = page

    def __call__(self) -> bytes | None:
        self._sock.settimeout(_POLL_SECONDS)
        try:
            while True:
                if self._page.cancelled:
                    raise Cancelled()
                try:
                    message = self._sock.recv(_PIECE + 1)
                except TimeoutError:
                    continue
                if not message:
                    raise Cancelled()  # the service is gone
                if message[:1] == _DATA:
                    return message[1:]
                if message[:1] == _EOF:
                    return None
        finally:
            self._sock.settimeout(None)  # the worker's own messages wait for room


class _Messages:  # pragma: no cover - runs in a worker
    """The intake's events, sent to the service."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def opened(self, staged: Staged) -> None:
        self._sock.send(_OPENED + json.dumps([u.handle for u in staged.uploads]).encode())

    def transferred(self, size: int) -> None:
        self._sock.send(_TRANSFERRED + str(size).encode())
