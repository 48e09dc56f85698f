"""Jobs as the store last returned them, kept in memory so that polls read no database.

While a download runs, clients poll its job and the download status thousands of times
for every change the job goes through (progress is written every half second). Each
poll read the job's row back from the database, the largest part of a poll's own work.
Two kinds of rows can be answered from memory without ever being stale:

- *This process's running jobs.* Their rows are written by this process alone, the one
  that owns them (every write names the owner, and the store refuses an owner whose
  lease was taken over): no other process changes them, and while such a job holds its
  kind's exclusive slot (a download always does) no other job of that kind can be created
  anywhere, so it is also the kind's latest job. Each is re-read from the store after
  every write of it, and ``get`` and ``latest`` answer it from memory until it ends.
  A job inserted for any worker to claim is cached only once this process claims it.
- *Ended jobs*, anyone's. A job that has ended never changes again; it is only deleted
  once its retention period is over, when the API stops showing it anyway (nodes of one
  cluster share ``job_retention_seconds``). The last few hundred read are kept.

What is answered is always a state the store held: a cached job is the store's own
answer, never a copy the cache edited itself. Everything else is read from the store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
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

    def get(self, uuid: str) -> Job | None:
        job = self._running.get(uuid) or self._ended.get(uuid)
        if job is not None:
            return job
        job = self._inner.get(uuid)
        if job is not None and job.state.terminal:
            self._remember_ended(job)
        return job

    def list(self, *, visible_after: float) -> list[Job]:
        return self._inner.list(visible_after=visible_after)

    def active(self, kind: JobKind) -> Job | None:
        return self._inner.active(kind)

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

    def insert(self, job: Job, *, exclusive: bool = False, owner: str | None = None,
               lease_until: float | None = None) -> None:
        with self._write:
            self._inner.insert(job, exclusive=exclusive, owner=owner, lease_until=lease_until)
            if owner is not None:  # ours from the start; else whoever claims it caches it
                self._own(job.uuid, exclusive, job.kind)

    def claim(self, owner: str, node: str, kinds: Collection[JobKind], now: float,
              lease_until: float) -> Job | None:
        with self._write:
            job = self._inner.claim(owner, node, kinds, now, lease_until)
            if job is not None:
                self._own(job.uuid, job.exclusive, job.kind)
            return job

    def transition(self, uuid: str, state: JobState, message: str, code: int = 0, *,
                   start_time: float | None = None, end_time: float | None = None,
                   owner: str | None = None) -> None:
        with self._write:
            try:
                self._inner.transition(uuid, state, message, code, start_time=start_time,
                                       end_time=end_time, owner=owner)
            finally:
                self._reread(uuid)

    def set_progress(self, uuid: str, message: str | None, progress: Progress, *,
                     owner: str | None = None) -> None:
        with self._write:
            try:
                self._inner.set_progress(uuid, message, progress, owner=owner)
            finally:
                self._reread(uuid)

    def save_checkpoint(self, uuid: str, owner: str, checkpoint: dict[str, Any]) -> None:
        with self._write:
            try:
                self._inner.save_checkpoint(uuid, owner, checkpoint)
            finally:
                self._reread(uuid)

    def renew(self, owner: str, lease_until: float) -> set[str]:
        held = self._inner.renew(owner, lease_until)
        with self._write:
            for uuid in [u for u in self._running if u not in held]:
                self._reread(uuid)  # taken over (or ended): no longer answered from memory
        return held

    def release(self, uuid: str, owner: str) -> None:
        with self._write:
            self._inner.release(uuid, owner)
            self._forget(uuid)

    def request_cancel(self, uuid: str) -> bool:
        return self._inner.request_cancel(uuid)

    def cancel_requests(self, owner: str) -> set[str]:
        return self._inner.cancel_requests(owner)

    def _own(self, uuid: str, exclusive: bool, kind: JobKind) -> None:
        if exclusive:
            self._slots[kind] = uuid
        self._reread(uuid, owned=True)

    def _reread(self, uuid: str, *, owned: bool = False) -> None:
        """Cache the job as the store now holds it, or forget it once it has ended or is
        no longer this process's. ``owned``: it just became ours (insert, claim).

        A failed re-read forgets it too: the next poll then asks the store itself.
        """
        try:
            job = self._inner.get(uuid)
        except Exception:
            job = None
        mine = owned or (uuid in self._running and job is not None
                         and job.owner == self._running[uuid].owner)
        if job is not None and not job.state.terminal and mine:
            self._running[uuid] = job
            return
        if job is not None and job.state.terminal:
            self._remember_ended(job)
        self._forget(uuid)

    def _forget(self, uuid: str) -> None:
        self._running.pop(uuid, None)
        for kind, holder in list(self._slots.items()):
            if holder == uuid:
                del self._slots[kind]

    def _remember_ended(self, job: Job) -> None:
        with self._ended_lock:
            self._ended[job.uuid] = job
            while len(self._ended) > self.ENDED:
                self._ended.popitem(last=False)
