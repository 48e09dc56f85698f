"""The jobs this process runs, kept as the store last returned them: polls read no database.

While a download runs, clients poll its job and the download status thousands of times
for every change the job goes through (progress is written every half second). Each
poll read the job's row back from the database, the largest part of a poll's own work.
Yet the rows of a running job are written by this process alone, the one that runs it:
no other process may change them, and while the job holds its kind's exclusive slot
(a download always does) no other job of that kind can be created anywhere, so it is
also the kind's latest job. :class:`RunningJobCache` therefore keeps each active job
this process inserted, re-read from the store after every write of it, and answers
``get`` and ``latest`` for those from memory. Everything else, and every job of another
process, is read from the store as before; a job leaves the cache when it ends.

What is answered is always a state the store held: the cached job is the store's own
answer after the last write, never a copy the cache edited itself.
"""

from __future__ import annotations

import threading
from typing import Any

from swdepot.jobs.model import Job, JobKind, JobState, Progress
from swdepot.jobs.store import JobStore


class RunningJobCache:
    """A :class:`JobStore` that serves this process's running jobs from memory."""

    def __init__(self, inner: JobStore) -> None:
        self._inner = inner
        self._write = threading.Lock()  # a write and its re-read, in order per store
        self._running: dict[str, Job] = {}  # uuid -> the job as last written and re-read
        self._slots: dict[JobKind, str] = {}  # kind -> uuid of this process's exclusive job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get(self, uuid: str) -> Job | None:
        job = self._running.get(uuid)
        return job if job is not None else self._inner.get(uuid)

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
        self._running.pop(uuid, None)
        for kind, holder in list(self._slots.items()):
            if holder == uuid:
                del self._slots[kind]
