"""CPU priority of background work (transfers, hashing, inspection) against the API.

When the two cores are short, a poll of a job should not wait behind the download it
asks about: the download is batch work, the poll a person or a script waiting. Linux
schedules threads individually, so the threads that move and check package bytes lower
their own priority (``nice``, setting ``transfer_nice``) while the event loop keeps the
default. With idle CPU a lower priority costs nothing; when the server the package comes
from runs on the same machine, it does (docs/performance.md), hence off by default.
"""

from __future__ import annotations

import contextlib
import os
import threading


def lower_this_thread(nice: int) -> None:
    """Give the calling thread ``nice`` (0 leaves it alone). Lowering is always allowed;
    raising it back would need privileges, so call this only on threads that end with
    their work. A no-op where threads have no priority of their own."""
    if nice <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
