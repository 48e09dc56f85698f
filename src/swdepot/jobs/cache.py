"""Jobs as the store last returned them, kept in memory so that polls read no database.

While a download runs, clients poll its job and the download status thousands of times
for every change the job goes through (progress is written every half second). Each
poll read the job's row back from the database, the largest part of a poll's own work.
Two kinds of rows can be answered from memory without ever being stale:

- *This process's running jobs.* Their rows are written by this process alone, the one
  that runs them: no other process changes them, and while such a job holds its kind's
  exclusive slot (a download always does) no other job of that kind can be created
  anywhere, so it is also the kind's latest job. Each is re-read from the store after
  every write of it, and ``get`` and ``latest`` answer it from memory until it ends.
- *Ended jobs*, anyone's. A job that has ended never changes again; it is only deleted
  once its retention period is over, when the API stops showing it anyway (nodes of one
  cluster share ``job_retention_seconds``). The last few hundred read are kept.

What is answered is always a state the store held: a cached job is the store's own
answer, never a copy the cache edited itself. Everything else is read from the store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from swdepot.jobs.model import Job, JobKind, JobState, Progress
from swdepot.jobs.store import JobStore


class RunningJobCache:
    """A :class:`JobStore` that serves this process's running jobs, and ended jobs, from
    memory."""

    ENDED = 256  # ended jobs kept: far more than are polled at once

    def __init__(self, inner: JobStore) -> None:
        self._inner = inner
        self._write = threading.Lock()  # a write and its re-read, in order per store
        self._running: dict[str, Job] = {}  # uuid -> the job as last written and re-read
        self._slots: dict[JobKind, str] = {}  # kind -> uuid of this process's exclusive job
        self._ended: OrderedDict[str, Job] = OrderedDict()  # uuid -> ended job, oldest first
        self._ended_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get(self, uuid: str) -> Job | None:
        job = self._running.get(uuid) or self._ended.get(uuid)
        if job is not None:
            return job
        job = self._inner.get(uuid)
        if job is not None and job.state.terminal:
            self._remember_ended(job)
        return job

    def purge(self, ended_before: float) -> int:
        with self._ended_lock:
            for uuid in [u for u, job in self._ended.items()
                         if job.end_time is not None and job.end_time < ended_before]:
                del self._ended[uuid]
        return self._inner.purge(ended_before)

    def latest(self, kind: JobKind) -> Job | None:
        uuid = self._slots.get(kind)
        job = self._running.get(uuid) if uuid is not None else None
        return job if job is not None else self._inner.latest(kind)

    def insert(self, job: Job, *, exclusive: bool = False) -> None:
        with self._write:
            self._inner.insert(job, exclusive=exclusive)
            if exclusive:
                self._slots[job.kind] = job.uuid
            self._reread(job.uuid)

    def transition(self, uuid: str, state: JobState, message: str, code: int = 0, *,
                   start_time: float | None = None, end_time: float | None = None) -> None:
        with self._write:
            try:
                self._inner.transition(uuid, state, message, code, start_time=start_time,
                                       end_time=end_time)
            finally:
                self._reread(uuid)

    def set_progress(self, uuid: str, message: str | None, progress: Progress) -> None:
        with self._write:
            try:
                self._inner.set_progress(uuid, message, progress)
            finally:
                self._reread(uuid)

    def fail_active(self, message: str, code: int, now: float, *, node: str) -> int:
        with self._write:
            try:
                return self._inner.fail_active(message, code, now, node=node)
            finally:
                for uuid in list(self._running):
                    self._reread(uuid)

    def _reread(self, uuid: str) -> None:
        """Cache the job as the store now holds it, or forget it once it has ended.

        A failed re-read forgets it too: the next poll then asks the store itself.
        """
        try:
            job = self._inner.get(uuid)
        except Exception:
            job = None
        if job is not None and not job.state.terminal:
            self._running[uuid] = job
            return
        if job is not None:
            self._remember_ended(job)
        self._running.pop(uuid, None)
        for kind, holder in list(self._slots.items()):
            if holder == uuid:
                del self._slots[kind]

    def _remember_ended(self, job: Job) -> None:
        with self._ended_lock:
            self._ended[job.uuid] = job
            while len(self._ended) > self.ENDED:
                self._ended.popitem(last=False)
