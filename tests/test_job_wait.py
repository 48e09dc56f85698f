"""JobRunner.wait (return_timeout): a job of this process wakes its waiter when it ends;
a time-out leaves the job alone; another process's job is read from the store.

Real SQLite store, real worker threads; nothing here measures a time.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from stores import CountingStore
from swdepot.jobs.model import Job, JobKind, JobState
from swdepot.jobs.runner import JobContext, JobRunner
from swdepot.persistence.sqlite import Database, SqliteJobStore


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(SqliteJobStore(Database(tmp_path / "jobs.db")))


def job() -> Job:
    return Job.new(JobKind.DOWNLOAD, "POST /api/cluster/software/download", node="node-1")


def blocked(gate: threading.Event, message: str = "done"):
    def work(_ctx: JobContext) -> str:
        assert gate.wait(30)
        return message
    return work


def test_a_local_job_wakes_its_waiter_and_is_read_once(store: CountingStore) -> None:
    runner = JobRunner(store, workers=1)
    gate = threading.Event()
    running = job()
    runner.start(running, blocked(gate))

    async def scenario() -> Job | None:
        reads_at_start = store.reads
        waiting = asyncio.ensure_future(runner.wait(running.uuid, 60))
        await asyncio.sleep(0.3)  # a poller would read several times meanwhile
        assert not waiting.done()
        assert store.reads == reads_at_start  # no read while the job runs
        gate.set()
        finished = await waiting
        assert store.reads == reads_at_start + 1  # one read, after the end
        return finished

    try:
        finished = asyncio.run(scenario())
        assert finished is not None and finished.state is JobState.SUCCESS
        assert finished.message == "done"
    finally:
        gate.set()
        runner.shutdown()


def test_a_time_out_leaves_a_queued_job_to_run(store: CountingStore) -> None:
    runner = JobRunner(store, workers=1)
    gate = threading.Event()
    first, queued = job(), job()
    runner.start(first, blocked(gate, "first"))
    done = runner.start(queued, blocked(gate, "second"))
    try:
        seen = asyncio.run(runner.wait(queued.uuid, 0.1))
        assert seen is not None and not seen.state.terminal
        gate.set()
        done.result(timeout=30)  # not cancelled by the waiter's time-out
        final = store.inner.get(queued.uuid)
        assert final is not None and final.state is JobState.SUCCESS
        assert final.message == "second"
    finally:
        gate.set()
        runner.shutdown()


def test_another_processs_job_is_polled_from_the_store(tmp_path: Path,
                                                       store: CountingStore) -> None:
    """A job inserted by another store (another node) is found by polling until it ends."""
    theirs = SqliteJobStore(Database(tmp_path / "jobs.db"))
    runner = JobRunner(store, workers=1)
    elsewhere = job()
    theirs.insert(elsewhere, exclusive=False)
    theirs.transition(elsewhere.uuid, JobState.RUNNING, "running", start_time=1.0)

    async def scenario() -> Job | None:
        waiting = asyncio.ensure_future(runner.wait(elsewhere.uuid, 60))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        theirs.transition(elsewhere.uuid, JobState.SUCCESS, "theirs", 0, end_time=2.0)
        return await waiting

    try:
        finished = asyncio.run(scenario())
        assert finished is not None and finished.state is JobState.SUCCESS
        assert store.reads > 1  # polled
    finally:
        runner.shutdown()
