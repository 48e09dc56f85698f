"""The fork server: a process forked before any thread exists, that forks the workers.

Forking a process that runs threads copies only the forking thread; a lock another
thread held at that moment (the allocator's, OpenSSL's, a logging handler's) stays held
for ever in the child. So the service forks this process once, at start-up, while it
still has only its main thread, and every worker process is forked by it on request:
the zygote never starts a thread, opens no database and does nothing but fork, so each
child starts from a clean single-threaded copy. Forked, not spawned, a child starts in
milliseconds with everything imported, and its pages stay shared with the zygote's and
the service's until written (``gc.freeze`` keeps the collector from writing them).

Contract:

- :meth:`Zygote.start` must be called while the caller has one thread (it checks, and
  says so in the log if not). The zygote inherits the caller's objects as they are at
  that moment; the roles it can run are fixed then.
- :meth:`Zygote.spawn` asks for a child of a named role and hands it descriptors
  (``SCM_RIGHTS``); it returns the child's pid. Safe from any thread.
- The zygote dies with the service (``PR_SET_PDEATHSIG``), reaps its children (and,
  as their subreaper, their orphans: a dead worker's transfer), and exits when the
  service closes its socket, killing and reaping what is left. Its children die with it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from swdepot import forked

log = logging.getLogger(__name__)

Role = Callable[[list[int], dict[str, object]], None]  # runs in the child, never returns
_MAX_FDS = 8


class ZygoteGone(Exception):
    """The fork server is not running any more: no new worker can be forked."""


class Zygote:
    """The service's handle on its fork server."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock
        self._lock = threading.Lock()

    @classmethod
    def start(cls, roles: Mapping[str, Role], *, keep: Sequence[int] = ()) -> Zygote:
        """Fork the zygote now; ``keep``: descriptors its children may inherit (a log
        socket) besides the ones each request hands over."""
        if threading.active_count() > 1:
            log.warning("the fork server is started while %d threads run: its children "
                        "may inherit locks held by them", threading.active_count())
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = forked.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            ours.close()
            _serve(theirs, dict(roles), keep)
        theirs.close()
        return cls(pid, ours)

    def spawn(self, role: str, fds: Sequence[int], args: dict[str, object] | None = None
              ) -> int:
        """Fork a child running ``role`` with ``fds`` (duplicated into it) and ``args``
        (JSON); its pid. Raises :class:`ZygoteGone` if the zygote is not there."""
        request = json.dumps({"role": role, "args": args or {}}).encode()
        with self._lock:
            try:
                socket.send_fds(self._sock, [request], list(fds))
                answer = self._sock.recv(64)
            except OSError as exc:
                raise ZygoteGone(str(exc)) from None
        if not answer:
            raise ZygoteGone("the fork server has exited")
        pid = int(answer)
        if pid < 0:
            raise ZygoteGone(f"the fork server could not fork a {role} process")
        return pid

    def alive(self) -> bool:
        try:
            finished, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return finished == 0

    def close(self) -> None:
        """End the zygote (its children are ended by their owners) and reap it."""
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(ChildProcessError):
            for _ in range(50):  # it exits as soon as it sees the socket closed
                finished, _ = os.waitpid(self.pid, os.WNOHANG)
                if finished:
                    return
                time.sleep(0.02)
        forked.reap(self.pid)


def _serve(sock: socket.socket, roles: dict[str, Role],
           keep: Sequence[int]) -> None:  # pragma: no cover - runs in the zygote
    """The zygote's whole life: fork a child per request, reap them, exit with the service."""
    status = 1
    children: set[int] = set()
    try:
        forked.detach(sock.fileno(), *keep)
        forked.become_subreaper()
        gc.freeze()  # inherited objects are never visited: their pages stay shared
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the service's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sock.settimeout(1.0)
        while True:
            children -= _reap_children()
            try:
                message, fds, _, _ = socket.recv_fds(sock, 65536, _MAX_FDS)
            except TimeoutError:
                continue
            if not message:
                break
            request = json.loads(message)
            role = roles.get(request["role"])
            pid = -1
            if role is not None:
                try:
                    pid = forked.fork()
                except OSError:
                    pid = -1
                if pid == 0:
                    sock.close()
                    _child(role, fds, request["args"], keep)
            for fd in fds:
                os.close(fd)
            if pid > 0:
                children.add(pid)
            sock.send(str(pid).encode())
        status = 0
    finally:
        _end_children(children)
        os._exit(status)


def _child(role: Role, fds: list[int], args: dict[str, object],
           keep: Sequence[int]) -> None:  # pragma: no cover - runs in a worker
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        forked.detach(*fds, *keep)  # and die with the zygote
        role(fds, args)
        status = 0
    except BaseException:
        log.exception("a worker process failed")
    finally:
        os._exit(status)


def _reap_children() -> set[int]:  # pragma: no cover - runs in the zygote
    """The children that ended since the last call (reaped: no zombie stays)."""
    ended = set()
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            ended.add(pid)
    return ended


def _end_children(children: set[int]) -> None:  # pragma: no cover - runs in the zygote
    """Kill and reap every child still there: none outlives the zygote as an orphan
    (whose zombie a container's init may never reap)."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)
