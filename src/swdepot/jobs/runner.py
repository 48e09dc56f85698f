"""Runs jobs on worker threads and records every state change in the job store.

Work functions are plain callables that receive a :class:`JobContext`; they return
the success message or raise an :class:`~swdepot.errors.OntapError`, whose code and
message become the job's failure. The store, not this object, is the source of
truth, so any process can read a job's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from swdepot.errors import OntapError
from swdepot.jobs.model import Job, JobState, Progress
from swdepot.jobs.store import JobStore

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5  # seconds between progress writes: cheap for the store, live for users


class Cancelled(Exception):
    """Raised inside work when the job was asked to stop."""


class JobContext:
    """What running work may do: report progress and notice cancellation."""

    def __init__(self, job: Job, store: JobStore, clock: Callable[[], float]) -> None:
        self.job = job
        self._store = store
        self._clock = clock
        self.cancel_event = threading.Event()
        self._cancel_callbacks: list[Callable[[], None]] = []
        self._cancel_lock = threading.Lock()
        self._last_write = 0.0
        self._last_bytes = 0
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

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

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
                                     Progress(bytes_done, bytes_total, round(self._speed, 1)))
        except Exception:  # progress is advisory: a full or busy store must not fail the job
            log.warning("could not record progress of job %s", self.job.uuid, exc_info=True)


class JobRunner:
    """A bounded pool of worker threads executing jobs."""

    def __init__(self, store: JobStore, *, workers: int = 4,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="swdepot-job")
        self._contexts: dict[str, JobContext] = {}
        self._running: dict[str, Future[None]] = {}  # this process's jobs, until they end
        self._lock = threading.Lock()

    def start(self, job: Job, work: Callable[[JobContext], str], *, exclusive: bool = False,
              internal_code: int = 0) -> Future[None]:
        """Persist ``job`` (raising ``SlotTaken`` if exclusive and busy) and run it."""
        self._store.insert(job, exclusive=exclusive)
        ctx = JobContext(job, self._store, self._clock)
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

    def _run(self, ctx: JobContext, work: Callable[[JobContext], str], internal_code: int) -> None:
        uuid = ctx.job.uuid
        try:
            self._store.transition(uuid, JobState.RUNNING, ctx.job.message,
                                   start_time=self._clock())
            message = work(ctx)
            self._store.transition(uuid, JobState.SUCCESS, message, 0, end_time=self._clock())
        except OntapError as exc:
            self._store.transition(uuid, JobState.FAILURE, exc.message, exc.code,
                                   end_time=self._clock())
        except Exception:
            log.exception("job %s failed unexpectedly", uuid)
            self._store.transition(uuid, JobState.FAILURE,
                                   "Internal error. Contact technical support.", internal_code,
                                   end_time=self._clock())
        finally:
            with self._lock:
                self._contexts.pop(uuid, None)

    def cancel(self, uuid: str) -> bool:
        """Ask a job running in this process to stop; False if it is not here."""
        with self._lock:
            ctx = self._contexts.get(uuid)
        if ctx is None:
            return False
        ctx.cancel()
        return True

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
        """Cancel running work and stop the workers."""
        with self._lock:
            contexts = list(self._contexts.values())
        for ctx in contexts:
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
