"""The service's worker processes, supervised: forked by the zygote, one task at a time.

A worker is a long-lived process forked by the fork server (``zygote.py``), so it
starts with one thread, shares its pages with the service, and holds nothing of the
service's (no database, no client connection, no lock). The service talks to each over
a socket pair of its own and shares one page of memory with it (a
:class:`~swdepot.transfer.control.ControlPage`: stop flag and progress); what the task
is and what each message means is up to the role the worker runs
(``software/ingest_process.py``). Workers log through the service
(:class:`~swdepot.forked.LogChannel`).

A pool keeps ``count`` workers ready and forks more while all of them are busy (a
download runs for an hour; an upload must not wait for it), up to ``limit``; a worker
handed back when enough are ready is retired.

Supervision: a worker whose socket closes (it died: killed, crashed, out of memory) is
replaced by a new one, at once when its task notices, otherwise within
:data:`CHECK_SECONDS` by the supervisor thread. A task hands its worker back only if it
ended cleanly; any other end kills the worker and starts a new one, so no worker ever
carries half a task into the next.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from swdepot.transfer.control import ControlPage
from swdepot.zygote import Zygote, ZygoteGone

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


class NoWorker(Exception):
    """No worker process can be had (the fork server is gone)."""


@dataclass(eq=False)
class Worker:
    """One worker process, as the service holds it."""

    pid: int
    sock: socket.socket  # the service's end of the worker's socket pair
    memory: mmap.mmap  # shared with the worker: the control page
    page: ControlPage = field(init=False)

    def __post_init__(self) -> None:
        self.page = ControlPage(self.memory)

    def gone(self) -> bool:
        """Has the worker's end of the socket closed (it died)? Never blocks."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            return bool(readable) and self.sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.close()

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(BufferError):
            self.memory.close()


class WorkerPool:
    """Workers of one role, each lent to one task at a time: ``count`` kept ready, more
    forked while every one is busy (up to ``limit``), and those retired again once idle."""

    def __init__(self, role: str, count: int = 1, *, limit: int = 4) -> None:
        self._zygote: Zygote | None = None
        self._role = role
        self._count = max(1, count)
        self._limit = max(self._count, limit)
        self._idle: list[Worker] = []
        self._lent: set[Worker] = set()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.restarts = 0  # workers started to replace dead ones

    def start(self, zygote: Zygote) -> None:
        """Start the workers, forked by ``zygote``, and the supervisor thread."""
        self._zygote = zygote
        for _ in range(self._count):
            self._add()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name="swdepot-workers")
        self._supervisor.start()

    def pids(self) -> list[int]:
        with self._changed:
            return sorted(w.pid for w in [*self._idle, *self._lent])

    @contextlib.contextmanager
    def lend(self, cancelled: Callable[[], bool] = lambda: False) -> Iterator[Worker]:
        """An idle worker for one task; waits while all are busy, and gives up (None is
        never yielded) with :class:`NoWorker` if none can be had or ``cancelled()``.

        The worker is handed back if the task's block ends normally; if it raises, the
        worker is killed and replaced (its task may still be running in it)."""
        worker = self._take(cancelled)
        try:
            yield worker
        except BaseException:
            self._replace(worker, "it died" if worker.gone() else "its task did not end cleanly")
            raise
        if worker.gone():
            self._replace(worker, "it died")
            return
        with self._changed:
            self._lent.discard(worker)
            retire = len(self._idle) >= self._count
            if not retire:
                self._idle.append(worker)
                self._changed.notify()
        if retire:  # one forked for a busy moment: it exits when its socket closes
            worker.close()

    def _take(self, cancelled: Callable[[], bool]) -> Worker:
        while True:
            with self._changed:
                grow = not self._idle and len(self._lent) < self._limit
            if grow:
                with contextlib.suppress(NoWorker):  # then wait for a busy one
                    self._add()
            with self._changed:
                while not self._idle:
                    if self._stop.is_set() or cancelled():
                        raise NoWorker("the service is stopping" if self._stop.is_set()
                                       else "cancelled")
                    self._changed.wait(0.1)
                worker = self._idle.pop()
                self._lent.add(worker)
            if not worker.gone():
                return worker
            self._replace(worker, "it died while idle")

    def _replace(self, worker: Worker, why: str) -> None:
        with self._changed:
            self._lent.discard(worker)
            with contextlib.suppress(ValueError):
                self._idle.remove(worker)
        worker.kill()
        if self._stop.is_set():
            return
        log.warning("worker process %d is replaced: %s", worker.pid, why)
        self.restarts += 1
        try:
            self._add()
        except NoWorker:
            log.error("no worker process could be started to replace %d", worker.pid)

    def _add(self) -> None:
        """Fork a new worker through the zygote and make it idle."""
        if self._zygote is None:
            raise NoWorker("the worker processes were not started")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        page_fd = os.memfd_create("swdepot-worker", os.MFD_CLOEXEC)
        try:
            os.ftruncate(page_fd, mmap.PAGESIZE)
            memory = mmap.mmap(page_fd, mmap.PAGESIZE)
            try:
                pid = self._zygote.spawn(self._role, [theirs.fileno(), page_fd])
            except ZygoteGone as exc:
                memory.close()
                ours.close()
                raise NoWorker(str(exc)) from None
        finally:
            theirs.close()
            os.close(page_fd)
        with self._changed:
            self._idle.append(Worker(pid, ours, memory))
            self._changed.notify()

    def _supervise(self) -> None:
        """Replace idle workers that died (a lent one is replaced by its task)."""
        while not self._stop.wait(CHECK_SECONDS):
            with self._changed:
                dead = [w for w in self._idle if w.gone()]
            for worker in dead:
                self._replace(worker, "it died while idle")
            if self._zygote is None or not self._zygote.alive():
                log.error("the fork server died: no new worker process can be started")
                return
            with self._changed:
                missing = self._count - len(self._idle) - len(self._lent)
            for _ in range(missing):  # a replacement that failed earlier
                with contextlib.suppress(NoWorker):
                    self._add()

    def close(self) -> None:
        """End every worker (a lent one's task sees its socket close) and the zygote."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        with self._changed:
            workers = [*self._idle, *self._lent]
            self._idle.clear()
            self._changed.notify_all()
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2.0
        for worker in workers:  # an idle worker exits when its socket closes
            while time.monotonic() < deadline and _alive(worker.pid):
                time.sleep(0.01)
            worker.kill()
        if self._zygote is not None:
            self._zygote.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True
