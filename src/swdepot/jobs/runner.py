"""The job engine: durable job rows, claimed by workers under a lease, run on threads.

Every job is a row in the :class:`~swdepot.jobs.store.JobStore`, which — not this
object — is the source of truth, so any process can read a job's state. Who may write a
job's row is decided by the store too:

- **Ownership.** A job is run by one *owner* (this runner: node, pid and a random tag).
  It owns the job from its insert (work that needs this process's memory: an upload's
  request body) or from an atomic :meth:`JobStore.claim`. Every write the work makes
  (state, progress, checkpoint) names the owner; once the job is no longer the owner's,
  the write raises :class:`~swdepot.jobs.store.LeaseLost` and the work is stopped.
- **Leases.** The keeper thread renews the lease of every job it owns every
  ``lease_seconds / 3``. A job whose lease has expired (its process hangs or died
  elsewhere), or whose owner is a dead earlier process of this node (the node lock
  proves it: ``nodelock.py``), is claimed again by whichever worker is free — here or in
  another process — and its kind's registered *handler* takes it over.
- **Handlers.** :meth:`JobRunner.register` names the work that runs a job of a kind from
  its row alone (``job.params``, ``job.checkpoint``): a download continues from what it
  had staged, a delete finishes, and work that cannot be redone (an upload whose client
  is gone) ends cleanly. A worker only claims the kinds it has handlers for.
- **Cancel** is a request written to the row (:meth:`JobRunner.cancel`); the owner's
  keeper reads the requests of its jobs every ``poll_interval`` and stops the work, so a
  cancel sent to any process reaches the job within a second.
- **Database loss.** While the store cannot be reached (:class:`~swdepot.errors.
  Unavailable`), leases are not renewed and lapse. Work whose writes fail stops
  without a final state and without discarding what it staged; the job is claimed
  again (here or elsewhere) once the store answers. A process never runs one job twice:
  a claim of a job its own worker still runs only takes the lease back, and a job it
  holds that no worker runs any more is released for a take-over.

Work functions receive a :class:`JobContext`; they return the success message or raise
an :class:`~swdepot.errors.OntapError`, whose code and message become the job's failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from swdepot.errors import OntapError, Unavailable
from swdepot.jobs.model import Job, JobKind, JobState, Progress
from swdepot.jobs.store import JobStore, LeaseLost

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5  # seconds between progress writes: cheap for the store, live for users
INTERNAL = "Internal error. Contact technical support."

Work = Callable[["JobContext"], str]


class JobContext:
    """What running work may do: report progress, checkpoint, notice cancellation."""

    def __init__(self, job: Job, store: JobStore, clock: Callable[[], float], *,
                 owner: str | None = None, taken_over: bool = False) -> None:
        self.job = job
        self.owner = owner
        self.taken_over = taken_over  # claimed after another process had started it
        self._store = store
        self._clock = clock
        self.cancel_event = threading.Event()
        self.lease_lost = False  # another process owns the job now: write nothing more
        self.stopping = False  # cancelled because this process is stopping
        self._cancel_callbacks: list[Callable[[], None]] = []
        self._cancel_lock = threading.Lock()
        self._last_write = 0.0
        self._last_bytes = job.progress.bytes_done if taken_over else 0
        self._last_time = clock()
        self._speed = 0.0

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the job is cancelled (at once if it already is).

        For work that blocks on something other than this context, e.g. a job waiting
        for request-body chunks that only a cancel of that channel can wake.
        """
        with self._cancel_lock:
            if not self.cancel_event.is_set():
                self._cancel_callbacks.append(callback)
                return
        callback()

    def cancel(self) -> None:
        """Set the cancel flag and wake whatever registered through :meth:`on_cancel`."""
        with self._cancel_lock:
            self.cancel_event.set()
            callbacks, self._cancel_callbacks = self._cancel_callbacks, []
        for callback in callbacks:
            callback()

    def report(self, message: str | None = None, *, bytes_done: int = 0,
               bytes_total: int | None = None, force: bool = False) -> None:
        """Record progress, at most every :data:`PROGRESS_INTERVAL` unless forced."""
        now = self._clock()
        elapsed = now - self._last_time
        if not force and now - self._last_write < PROGRESS_INTERVAL:
            return
        if elapsed > 0:
            current = (bytes_done - self._last_bytes) / elapsed
            self._speed = current if self._speed == 0 else 0.5 * self._speed + 0.5 * current
        self._last_bytes, self._last_time, self._last_write = bytes_done, now, now
        try:
            self._store.set_progress(self.job.uuid, message,
                                     Progress(bytes_done, bytes_total, round(self._speed, 1)),
                                     owner=self.owner)
        except Unavailable as exc:  # advisory: the next write tells, or the job stops
            log.warning("could not record progress of job %s: %s", self.job.uuid, exc.message)
        except Exception:  # progress is advisory: a full or busy store must not fail the job
            log.warning("could not record progress of job %s", self.job.uuid, exc_info=True)

    def checkpoint(self, **changes: Any) -> None:
        """Record what a process taking this job over may reuse (merged into the last).

        Raises :class:`LeaseLost` (and stops the work) if the job is no longer ours.
        """
        merged = {**self.job.checkpoint, **changes}
        if self.owner is None:
            self.job = self.job.with_changes(checkpoint=merged)
            return
        try:
            self._store.save_checkpoint(self.job.uuid, self.owner, merged)
        except LeaseLost:
            self.lease_lost = True
            self.cancel()
            raise
        self.job = self.job.with_changes(checkpoint=merged)


@dataclass(frozen=True)
class _Handler:
    work: Work
    internal_code: int


class JobRunner:
    """Claims and runs jobs on a bounded pool of worker threads, under leases."""

    def __init__(self, store: JobStore, *, node: str = "local", workers: int = 4,
                 clock: Callable[[], float] = time.time, lease_seconds: float = 15.0,
                 poll_interval: float = 0.25, claim_interval: float = 1.0) -> None:
        self._store = store
        self.node = node
        self.owner = f"{node}/{os.getpid()}/{secrets.token_hex(4)}"
        self._clock = clock
        self._workers = workers
        self._lease = lease_seconds
        self._poll = poll_interval
        self._claim_every = claim_interval
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="swdepot-job")
        self._handlers: dict[JobKind, _Handler] = {}
        self._contexts: dict[str, JobContext] = {}
        self._orphans: set[str] = set()  # held by this owner, run by no worker (_renew)
        self._running: dict[str, Future[None]] = {}  # this process's jobs, until they end
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    # --- starting jobs ------------------------------------------------------------------

    def register(self, kind: JobKind, work: Work, *, internal_code: int = 0) -> None:
        """The work that runs (or takes over) a job of ``kind`` from its row alone."""
        self._handlers[kind] = _Handler(work, internal_code)

    def submit(self, job: Job, *, exclusive: bool = False) -> None:
        """Persist a job of a registered kind (raising ``SlotTaken`` if exclusive and
        busy). A free worker of this process takes it at once, in the same insert;
        otherwise it waits for any process's free worker to claim it."""
        handler = self._handlers[job.kind]
        with self._lock:
            free = len(self._running) < self._workers and not self._stop.is_set()
        if not free:
            self._store.insert(job, exclusive=exclusive)
            return
        self._store.insert(job, exclusive=exclusive, owner=self.owner,
                           lease_until=self._clock() + self._lease)
        self._run_owned(job.with_changes(owner=self.owner, exclusive=exclusive),
                        handler.work, handler.internal_code, taken_over=False)

    def start(self, job: Job, work: Work, *, exclusive: bool = False,
              internal_code: int = 0) -> Future[None]:
        """Persist ``job`` owned by this process and run ``work`` (which may use this
        process's memory); should the process die, the kind's handler takes it over."""
        self._store.insert(job, exclusive=exclusive, owner=self.owner,
                           lease_until=self._clock() + self._lease)
        return self._run_owned(job.with_changes(owner=self.owner, exclusive=exclusive),
                               work, internal_code, taken_over=False)

    def _run_owned(self, job: Job, work: Work, internal_code: int, *,
                   taken_over: bool) -> Future[None]:
        ctx = JobContext(job, self._store, self._clock, owner=self.owner,
                         taken_over=taken_over)
        if job.cancel_requested:
            ctx.cancel()
        with self._lock:
            self._contexts[job.uuid] = ctx
        # the job's log lines carry the id of the request that started it
        context = contextvars.copy_context()
        future = self._pool.submit(context.run, self._run, ctx, work, internal_code)
        with self._lock:
            self._running[job.uuid] = future
        future.add_done_callback(lambda _: self._forget(job.uuid))
        return future

    def _forget(self, uuid: str) -> None:
        with self._lock:
            self._running.pop(uuid, None)
        self._wake.set()  # a worker is free: look for queued work

    def _run(self, ctx: JobContext, work: Work, internal_code: int) -> None:
        uuid, owner = ctx.job.uuid, ctx.owner
        try:
            if not ctx.taken_over:
                self._store.transition(uuid, JobState.RUNNING, ctx.job.message,
                                       start_time=self._clock(), owner=owner)
            state, message, code = self._outcome(ctx, work, internal_code)
            if ctx.lease_lost:
                raise LeaseLost(uuid)
            if state is JobState.FAILURE and ctx.stopping and owner is not None:
                # interrupted by this process's own shutdown, not by the job: another
                # worker (or this node, started again) takes it over
                self._store.release(uuid, owner)
                log.info("job %s released for another process to take over", uuid)
                return
            self._store.transition(uuid, state, message, code, end_time=self._clock(),
                                   owner=owner)
        except LeaseLost:
            log.warning("job %s was taken over by another process; this one stopped it", uuid)
        except Unavailable:
            # its outcome cannot be recorded: the lease lapses, and the job is taken over
            # (here or on another node) once the database answers again
            log.warning("job %s stopped: the database cannot be reached; it is taken over "
                        "when the database is back", uuid)
        finally:
            with self._lock:
                self._contexts.pop(uuid, None)

    @staticmethod
    def _outcome(ctx: JobContext, work: Work, internal_code: int) -> tuple[JobState, str, int]:
        """Run the work: how it ended, as the job's final state, message and code."""
        try:
            return JobState.SUCCESS, work(ctx), 0
        except (LeaseLost, Unavailable):
            raise
        except OntapError as exc:
            return JobState.FAILURE, exc.message, exc.code
        except Exception:
            if not ctx.lease_lost and not ctx.stopping:
                log.exception("job %s failed unexpectedly", ctx.job.uuid)
            return JobState.FAILURE, INTERNAL, internal_code

    # --- the keeper: leases, cancel requests, claims ------------------------------------

    def start_engine(self) -> None:
        """Start the keeper thread: it renews leases, passes on cancel requests and
        claims jobs nobody runs (a dead predecessor's at once)."""
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="swdepot-jobs",
                                            daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        next_renew = next_claim = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self.pass_on_cancels()
                if now >= next_renew:
                    next_renew = now + self._lease / 3
                    self._renew()
                if now >= next_claim or self._wake.is_set():
                    self._wake.clear()
                    next_claim = now + self._claim_every
                    self.claim_available()
            except Unavailable as exc:  # the database is away: try again on the next round
                log.warning("job keeper round failed: %s", exc.message)
            except Exception:  # a busy or failing store: try again on the next round
                log.warning("job keeper round failed", exc_info=True)
            self._wake.wait(self._poll)

    def pass_on_cancels(self) -> None:
        """Stop this process's jobs that somebody asked (in their rows) to cancel: one
        keeper round, every ``poll_interval``."""
        with self._lock:
            if not self._contexts:
                return
        for uuid in self._store.cancel_requests(self.owner):
            with self._lock:
                ctx = self._contexts.get(uuid)
            if ctx is not None and not ctx.cancelled:
                log.info("job %s: cancel requested", uuid)
                ctx.cancel()

    def _renew(self) -> None:
        """Extend our leases; stop the work of any job that is no longer ours."""
        with self._lock:
            if not self._contexts:
                return  # nothing of ours runs: nothing to renew
        held = self._store.renew(self.owner, self._clock() + self._lease)
        with self._lock:
            missing = [ctx for uuid, ctx in self._contexts.items() if uuid not in held]
            orphans = held - self._contexts.keys()
        # held in the store but run by no worker here (a run that ended while its last
        # write could not reach the database): released for a take-over. Seen in two
        # rounds in a row, not one: a job just inserted may not be running yet.
        for uuid in orphans & self._orphans:
            log.warning("job %s is held by this process but no longer runs here; "
                        "released for a take-over", uuid)
            self._store.release(uuid, self.owner)
        self._orphans = orphans - self._orphans
        for ctx in missing:
            current = self._store.get(ctx.job.uuid)
            if current is None or current.state.terminal or current.owner == self.owner:
                continue  # it just ended, or was inserted after the renewal
            log.warning("job %s: lease lost to %s; stopping it here", ctx.job.uuid,
                        current.owner)
            ctx.lease_lost = True
            ctx.cancel()

    def claim_available(self) -> int:
        """Claim and start jobs nobody runs while workers are free; how many."""
        started = 0
        kinds = list(self._handlers)
        while kinds and not self._stop.is_set():
            with self._lock:
                if len(self._running) >= self._workers:
                    break
            now = self._clock()
            job = self._store.claim(self.owner, self.node, kinds, now, now + self._lease)
            if job is None:
                break
            with self._lock:
                still_ours = job.uuid in self._contexts
            if still_ours:
                # its lease lapsed while the database was away, but its run here goes
                # on: the claim renewed this owner's lease, and no second run starts
                log.info("job %s: lease taken back by the process that runs it", job.uuid)
                continue
            handler = self._handlers[job.kind]
            taken_over = job.state is not JobState.QUEUED
            if taken_over:
                log.warning("taking over job %s (%s), left by a process that is gone",
                            job.uuid, job.kind)
            self._run_owned(job, handler.work, handler.internal_code, taken_over=taken_over)
            started += 1
        return started

    # --- control ------------------------------------------------------------------------

    def cancel(self, uuid: str) -> bool:
        """Ask a job to stop, whichever process runs it; False if it is not active."""
        requested = self._store.request_cancel(uuid)
        with self._lock:
            ctx = self._contexts.get(uuid)
        if ctx is not None:
            ctx.cancel()  # ours: at once, not at the keeper's next round
        return requested or ctx is not None

    async def wait(self, uuid: str, timeout: float) -> Job | None:
        """Wait up to ``timeout`` seconds for a job to end, then read it from the store.

        A job of this process wakes the caller the moment its worker returns, which is
        after its last write (return_timeout answers then, not up to 100 ms later); any
        other job is polled for, fast at first, then every 100 ms, since only the store
        knows about it.
        """
        with self._lock:
            future = self._running.get(uuid)
        if future is not None:
            await _ended(future, timeout)
            return self._store.get(uuid)
        deadline = asyncio.get_running_loop().time() + timeout
        delay = 0.005
        while True:
            job = self._store.get(uuid)
            if job is None or job.state.terminal:
                return job
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return job
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop claiming, stop the running work and the workers.

        Work that ends because of it is not failed: its job is released, for another
        process (or this node's next one) to take over with its kind's handler. Jobs
        still waiting for a worker of this process stay claimed by it and are taken over
        once the node lock shows it gone.
        """
        self._stop.set()
        self._wake.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)
        with self._lock:
            contexts = list(self._contexts.values())
        for ctx in contexts:
            ctx.stopping = True
            ctx.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=True)


async def _ended(future: Future[None], timeout: float) -> None:
    """Wait up to ``timeout`` seconds for a worker's future, never touching it.

    Not ``asyncio.wrap_future``: cancelling its wrapper on a time-out would cancel a job
    still queued for a worker, and a wrapper left pending would call into the loop after
    it closed.
    """
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def settle() -> None:
        if not ended.done():
            ended.set_result(None)

    def wake(_: Future[None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
            loop.call_soon_threadsafe(settle)

    future.add_done_callback(wake)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ended, timeout)
