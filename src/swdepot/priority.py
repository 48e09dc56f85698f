"""CPU priority of background work (transfers, hashing, inspection) against the API.

When the two cores are short, a poll of a job should not wait behind the download it
asks about: the download is batch work, the poll a person or a script waiting. Linux
schedules threads individually and a new thread starts with its creator's priority, so
a download's child processes lower their first thread (``nice``, setting
``transfer_nice``) and everything they start inherits it, while the service keeps the
default. With idle CPU a lower priority costs nothing (measured, docs/performance.md).

Only whole child processes are lowered, never a thread of the service: a low-priority
thread that holds the GIL when it is preempted makes the event loop wait until that
thread gets the CPU again, which is the inversion the children exist to avoid.
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
