"""One live process per node name and data directory: a lock held for the process's life.

Two ``swdepot serve`` processes with the same node name on one data directory would each
take the other's work for the leftovers of a dead predecessor: the second one's start-up
recovery would fail the first one's running download and delete its staging files. So a
process that serves node *N* from a data directory first takes an exclusive ``flock`` on
``locks/<N>.lock`` in it, before it reads or writes anything else there, and keeps it
until it exits. The kernel releases the lock when the process dies, however it dies
(SIGKILL included), so the lock proves two things:

- while it is held, a live process serves that node: nobody else may act as it;
- once a process holds it, every leftover of its node (staging files, active jobs it did
  not claim anew) belongs to a predecessor that is dead.

Processes with different node names share a data directory freely; each holds its own
lock. The file holds who took it (pid, host, start time), so a refused start can name the
process in the way. Forked helpers close the descriptor at once (``forked.detach``), and
it is opened ``O_CLOEXEC``, so no child keeps the lock alive after its parent.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

LOCK_DIR = "locks"


class NodeBusy(Exception):
    """Another live process already serves this node from this data directory."""

    def __init__(self, node: str, data_dir: Path, holder: dict[str, Any]) -> None:
        self.node = node
        self.data_dir = data_dir
        self.holder = holder
        pid = holder.get("pid", "unknown")
        host = holder.get("host")
        since = holder.get("started")
        where = f" on {host}" if host else ""
        when = (f", running since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}"
                if isinstance(since, int | float) else "")
        super().__init__(
            f"node {node!r} is already served from {data_dir} by process {pid}{where}{when}. "
            "Stop that process first, or start this one with another --node-name.")


def slug(node: str) -> str:
    """A file-name-safe, collision-free token for a node name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", node)[:40]
    return f"{safe}-{hashlib.sha256(node.encode()).hexdigest()[:8]}"


class NodeLock:
    """The held lock of one node on one data directory; :meth:`release` (or exit) frees it."""

    def __init__(self, path: Path, fd: int, node: str) -> None:
        self.path = path
        self.node = node
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, node: str) -> NodeLock:
        """Take the node's lock, or raise :class:`NodeBusy` naming the process holding it."""
        directory = data_dir / LOCK_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{slug(node)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise NodeBusy(node, data_dir, holder) from None
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "node": node,
                "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        return cls(path, fd, node)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let the next process of this node start; safe to call more than once."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read(fd: int) -> dict[str, Any]:
    """What the holder wrote about itself; empty if it is not (yet) readable."""
    with contextlib.suppress(OSError, ValueError):
        value = json.loads(os.pread(fd, 4096, 0) or b"{}")
        if isinstance(value, dict):
            return value
    return {}
