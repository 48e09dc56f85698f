"""RunningJobCache (jobs/cache.py): this process's running jobs, and ended jobs, from
memory, always as the database holds them; everything else from the database.

Each test runs two stores over one real SQLite file: ``ours`` (the cache over its own
connection, as the service builds it) and ``theirs`` (another process's plain store).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stores import CountingStore
from swdepot.jobs.cache import RunningJobCache
from swdepot.jobs.model import Job, JobKind, JobState, Progress
from swdepot.jobs.store import SlotTaken
from swdepot.persistence.sqlite import Database, SqliteJobStore


@pytest.fixture
def stores(tmp_path: Path) -> tuple[RunningJobCache, CountingStore, SqliteJobStore]:
    path = tmp_path / "jobs.db"
    counting = CountingStore(SqliteJobStore(Database(path)))
    return RunningJobCache(counting), counting, SqliteJobStore(Database(path))


ME = "node-1/1/cafe"  # this process, as its job runner names itself
LEASE = 10_000.0  # far in the future of the tests' clock


def download(node: str = "node-1") -> Job:
    return Job.new(JobKind.DOWNLOAD, "POST /api/cluster/software/download", node=node)


def test_a_running_job_is_answered_from_memory_exactly_as_the_database_holds_it(stores):
    ours, counting, theirs = stores
    job = download()
    ours.insert(job, exclusive=True, owner=ME, lease_until=LEASE)
    ours.transition(job.uuid, JobState.RUNNING, "Package download in progress",
                    start_time=1000.0)
    ours.set_progress(job.uuid, None, Progress(1 << 20, 4 << 20, 123.4))
    counting.reads = 0
    for _ in range(3):
        assert ours.get(job.uuid) == theirs.get(job.uuid)
        assert ours.latest(JobKind.DOWNLOAD) == theirs.latest(JobKind.DOWNLOAD)
    assert counting.reads == 0
    assert ours.get(job.uuid).progress == Progress(1 << 20, 4 << 20, 123.4)


def test_an_ended_job_is_kept_as_last_read(stores):
    ours, counting, theirs = stores
    job = download()
    ours.insert(job, exclusive=True, owner=ME, lease_until=LEASE)
    ours.transition(job.uuid, JobState.SUCCESS, "success", end_time=2000.0)
    counting.reads = 0
    assert ours.get(job.uuid) == theirs.get(job.uuid)
    assert ours.get(job.uuid).state is JobState.SUCCESS
    assert counting.reads == 0  # ended: it never changes again, and was read as it ended
    # no longer the kind's latest by its slot: that is the database's answer again
    assert ours.latest(JobKind.DOWNLOAD) == theirs.latest(JobKind.DOWNLOAD)
    assert counting.reads == 1
    other = download("node-2")  # another process's ended job: read once, then kept
    theirs.insert(other)
    theirs.transition(other.uuid, JobState.FAILURE, "failed", 1, end_time=2500.0)
    assert ours.get(other.uuid) == ours.get(other.uuid) == theirs.get(other.uuid)
    assert counting.reads == 2


def test_ended_jobs_leave_when_purged_and_only_so_many_are_kept(stores):
    ours, counting, theirs = stores
    old, recent = download(), download()
    for job, ended in ((old, 1000.0), (recent, 5000.0)):
        theirs.insert(job)
        theirs.transition(job.uuid, JobState.FAILURE, "failed", 1, end_time=ended)
        assert ours.get(job.uuid).end_time == ended
    newest = download()
    theirs.insert(newest)  # the purge keeps each kind's latest job, whatever its age
    ours.purge(2000.0)
    assert ours.get(old.uuid) is None and theirs.get(old.uuid) is None
    assert ours.get(recent.uuid) == theirs.get(recent.uuid)
    for _ in range(RunningJobCache.ENDED + 5):
        job = download()
        theirs.insert(job)
        theirs.transition(job.uuid, JobState.SUCCESS, "success", end_time=6000.0)
        ours.get(job.uuid)
    assert len(ours._ended) == RunningJobCache.ENDED
    counting.reads = 0
    assert ours.get(recent.uuid) == theirs.get(recent.uuid)  # the oldest were let go
    assert counting.reads == 1


def test_another_processs_jobs_and_newer_jobs_come_from_the_database(stores):
    ours, _counting, theirs = stores
    mine, other = download(), download("node-2")
    theirs.insert(other, exclusive=True)
    assert ours.get(other.uuid) == theirs.get(other.uuid)
    with pytest.raises(SlotTaken):  # the slot is the database's, whoever asks
        ours.insert(mine, exclusive=True, owner=ME, lease_until=LEASE)
    assert ours.get(mine.uuid) is None
    theirs.transition(other.uuid, JobState.RUNNING, "running")
    assert ours.get(other.uuid).state is JobState.RUNNING  # never cached: always fresh
    assert ours.latest(JobKind.DOWNLOAD).uuid == other.uuid


def test_only_an_exclusive_job_stands_for_its_kinds_latest(stores):
    ours, _counting, theirs = stores
    upload = Job.new(JobKind.UPLOAD, "POST /api/cluster/software/upload", node="node-1")
    # no slot: another process may create a newer upload meanwhile
    ours.insert(upload, owner=ME, lease_until=LEASE)
    newer = Job.new(JobKind.UPLOAD, "POST /api/cluster/software/upload", node="node-2")
    newer = newer.with_changes(created_at=upload.created_at + 1)
    theirs.insert(newer)
    assert ours.get(upload.uuid) == theirs.get(upload.uuid)
    assert ours.latest(JobKind.UPLOAD).uuid == newer.uuid


def test_a_job_another_process_took_over_is_no_longer_answered_from_memory(stores):
    ours, _counting, theirs = stores
    job = download()
    ours.insert(job, exclusive=True, owner=ME, lease_until=LEASE)
    ours.transition(job.uuid, JobState.RUNNING, "running", start_time=1.0, owner=ME)
    # our lease ran out (this process hung): another node claims the job and writes it
    claimed = theirs.claim("node-2/2/beef", "node-2", [JobKind.DOWNLOAD], LEASE + 1,
                           LEASE + 100)
    assert claimed is not None and claimed.uuid == job.uuid
    theirs.set_progress(job.uuid, "theirs now", Progress(5, 10, 1.0), owner="node-2/2/beef")
    assert ours.renew(ME, LEASE + 2) == set()  # the renewal finds it gone ...
    assert ours.get(job.uuid) == theirs.get(job.uuid)  # ... and stops answering it
    assert ours.get(job.uuid).message == "theirs now"
    assert ours.latest(JobKind.DOWNLOAD).message == "theirs now"


def test_a_job_queued_for_any_worker_is_cached_once_claimed(stores):
    ours, counting, theirs = stores
    job = download()
    ours.insert(job, exclusive=True)  # nobody's yet: another process may claim it
    counting.reads = 0
    ours.get(job.uuid)
    assert counting.reads == 1
    assert ours.claim(ME, "node-1", [JobKind.DOWNLOAD], 1.0, LEASE) is not None
    counting.reads = 0
    assert ours.get(job.uuid) == theirs.get(job.uuid)
    assert ours.get(job.uuid).owner == ME
    assert counting.reads == 0
