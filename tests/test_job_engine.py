"""The durable job engine (jobs/runner.py): claims, leases, take-over and persisted cancel.

On both engines (``engine``: a real SQLite file, a real PostgreSQL database); each
runner has its own database connection, as separate processes have, so the store's
locking — not anything in this process — decides every race.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swdepot.errors import OntapError, database_unreachable
from swdepot.jobs.model import Job, JobKind, JobState
from swdepot.jobs.runner import JobContext, JobRunner
from swdepot.jobs.store import LeaseLost
from swdepot.persistence.sqlite import Database, SqliteJobStore
from swdepot.sealing import SealBroken, Sealer


def delete_job(n: int = 0) -> Job:
    return Job.new(JobKind.DELETE_PACKAGE, f"DELETE /api/cluster/software/packages/{n}",
                   node="node-1", target=str(n))


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=st.integers(min_value=1, max_value=30),
       runners=st.integers(min_value=2, max_value=4),
       workers=st.integers(min_value=1, max_value=3))
def test_many_jobs_and_racing_workers_run_every_job_exactly_once(engine, jobs, runners,
                                                                 workers):
    ran: Counter[str] = Counter()
    lock = threading.Lock()

    def work(ctx: JobContext) -> str:
        with lock:
            ran[ctx.job.uuid] += 1
        time.sleep(0.001)
        return "success"

    producer = engine.job_store()
    engines = []
    for n in range(runners):
        runner = JobRunner(engine.job_store(), node=f"node-{n}",
                           workers=workers, poll_interval=0.005, claim_interval=0.005)
        runner.register(JobKind.DELETE_PACKAGE, work)
        engines.append(runner)
    queued = [delete_job(i) for i in range(jobs)]
    try:
        for runner in engines:
            runner.start_engine()
        for job in queued:  # inserted for any worker, while the workers already race
            producer.insert(job)
        wait_for(lambda: all(producer.get(j.uuid).state is JobState.SUCCESS for j in queued))
    finally:
        for runner in engines:
            runner.shutdown()
    assert ran == Counter({job.uuid: 1 for job in queued})


def test_an_expired_lease_is_taken_over_and_the_old_owner_can_no_longer_write(engine):
    clock = [1000.0]
    hung_store, live_store = engine.job_store(), engine.job_store()
    hung = JobRunner(hung_store, node="node-1", lease_seconds=10, clock=lambda: clock[0])
    live = JobRunner(live_store, node="node-2", lease_seconds=10, clock=lambda: clock[0])
    started, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def stalls(ctx: JobContext) -> str:  # a process that hangs: it renews nothing
        started.set()
        release.wait(30)
        try:
            ctx.checkpoint(step="late")
        except LeaseLost:
            outcome["lost"] = True
            raise
        return "success from the hung process"

    def takes_over(ctx: JobContext) -> str:
        outcome["taken_over"] = ctx.taken_over
        return "success from the live process"

    hung.register(JobKind.DELETE_PACKAGE, stalls)
    live.register(JobKind.DELETE_PACKAGE, takes_over)
    job = delete_job()
    try:
        hung.submit(job)
        assert started.wait(10)
        assert live.claim_available() == 0  # the lease still holds
        clock[0] += 11  # ... and now it has run out
        assert live.claim_available() == 1
        wait_for(lambda: live_store.get(job.uuid).state is JobState.SUCCESS)
        release.set()
        wait_for(lambda: "lost" in outcome)
        final = live_store.get(job.uuid)
        assert final.message == "success from the live process"
        assert final.node == "node-2" and outcome["taken_over"] is True
        with pytest.raises(LeaseLost):  # a write naming the old owner is refused
            hung_store.transition(job.uuid, JobState.FAILURE, "late", 1, owner=hung.owner)
    finally:
        release.set()
        hung.shutdown()
        live.shutdown()


def test_a_lease_lapsed_while_the_database_was_away_never_runs_a_job_twice(engine):
    """The lease of a job this process still runs ran out (its renewals failed): its own
    claim only takes the lease back, and no second run starts. A run that then ends
    without a final state (its writes cannot reach the database) leaves a job held but
    run nowhere: it is released, then claimed again and taken over."""
    clock = [1000.0]
    store = engine.job_store()
    runner = JobRunner(store, node="node-1", lease_seconds=10, clock=lambda: clock[0])
    runs: list[bool] = []
    started, release = threading.Event(), threading.Event()

    def work(ctx: JobContext) -> str:
        runs.append(ctx.taken_over)
        if not ctx.taken_over:
            started.set()
            release.wait(30)
            raise database_unreachable()  # its outcome cannot be recorded
        return "success after the outage"

    runner.register(JobKind.DELETE_PACKAGE, work)
    job = delete_job()
    try:
        runner.submit(job)
        assert started.wait(10)
        clock[0] += 11  # the renewals failed meanwhile: the lease ran out
        assert runner.claim_available() == 0
        assert runs == [False]
        assert store.get(job.uuid).lease_until == clock[0] + 10  # taken back
        release.set()
        wait_for(lambda: not runner._contexts)  # the run ended, with no final state
        assert store.get(job.uuid).state is JobState.RUNNING
        runner._contexts["other"] = runner._contexts.get("other") or JobContext(
            delete_job(1), store, lambda: clock[0])  # something else runs: renewals go on
        runner._renew()
        assert store.get(job.uuid).owner == runner.owner  # one round: maybe just inserted
        runner._renew()
        assert store.get(job.uuid).owner is None  # released for a take-over
        runner._contexts.pop("other")
        assert runner.claim_available() == 1
        wait_for(lambda: store.get(job.uuid).state is JobState.SUCCESS)
        assert runs == [False, True]
        assert store.get(job.uuid).message == "success after the outage"
    finally:
        release.set()
        runner.shutdown()


def test_a_cancel_written_by_one_process_stops_the_job_another_runs(engine):
    """The other process only writes the request; the owner's next keeper round (every
    ``poll_interval``, 0.25 s by default) stops the work."""
    owner_store, other_store = engine.job_store(), engine.job_store()
    runner = JobRunner(owner_store, node="node-1")
    elsewhere = JobRunner(other_store, node="node-2")

    def until_cancelled(ctx: JobContext) -> str:
        if not ctx.cancel_event.wait(30):
            return "never cancelled"
        raise OntapError(10551381, "Package download failed: the download was canceled.")

    runner.register(JobKind.DELETE_PACKAGE, until_cancelled)
    job = delete_job()
    try:
        runner.submit(job)
        wait_for(lambda: other_store.get(job.uuid).state is JobState.RUNNING)
        assert elsewhere.cancel(job.uuid)  # the other process only writes the request
        assert other_store.get(job.uuid).cancel_requested
        assert other_store.get(job.uuid).state is JobState.RUNNING  # nothing stopped it yet
        runner.pass_on_cancels()  # one keeper round of the owner
        wait_for(lambda: other_store.get(job.uuid).state is JobState.FAILURE)
        assert "canceled" in other_store.get(job.uuid).message
        assert not elsewhere.cancel(job.uuid)  # ended: nothing to cancel any more
    finally:
        runner.shutdown()
        elsewhere.shutdown()


def test_passwords_are_sealed_in_the_row_and_wiped_when_the_job_ends(engine, tmp_path):
    store = engine.job_store()
    sealer = Sealer(tmp_path / "secrets" / "job.key")
    job = delete_job()
    job = job.with_changes(params={"secret": sealer.seal("hunter2-password", job.uuid)})
    store.insert(job)
    assert "hunter2-password" not in repr(engine.rows("SELECT * FROM jobs"))
    stored = store.get(job.uuid)
    assert sealer.open(stored.params["secret"], job.uuid) == "hunter2-password"
    with pytest.raises(SealBroken):  # bound to its job: useless in another row
        sealer.open(stored.params["secret"], "another-job")
    with pytest.raises(SealBroken):  # and to its key
        Sealer(tmp_path / "other.key").open(stored.params["secret"], job.uuid)
    assert (tmp_path / "secrets" / "job.key").stat().st_mode & 0o077 == 0
    store.transition(job.uuid, JobState.SUCCESS, "success", end_time=1.0)
    ((params, owner),) = engine.rows("SELECT params, owner FROM jobs")
    assert (json.loads(params) if isinstance(params, str) else params) == {} and owner is None


def test_a_database_of_the_previous_version_gains_the_engine_columns(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE jobs (uuid TEXT PRIMARY KEY, kind TEXT NOT NULL, description TEXT NOT"
        " NULL, state TEXT NOT NULL, message TEXT NOT NULL, code INTEGER NOT NULL DEFAULT 0,"
        " created_at REAL NOT NULL, start_time REAL, end_time REAL, node TEXT NOT NULL"
        " DEFAULT '', target TEXT, bytes_done INTEGER NOT NULL DEFAULT 0, bytes_total"
        " INTEGER, speed REAL NOT NULL DEFAULT 0, exclusive INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO jobs (uuid, kind, description, state, message, created_at)"
        " VALUES ('u1', 'download', 'POST', 'success', 'success', 1.0);")
    conn.commit()
    conn.close()
    store = SqliteJobStore(Database(path))
    old = store.get("u1")
    assert old is not None and old.params == {} and old.owner is None
    assert old.state is JobState.SUCCESS


def test_a_dead_predecessor_of_this_node_is_taken_over_at_once(engine):
    """Its lease has not run out, but the node lock proves the process is gone."""
    store = engine.job_store()
    job = delete_job()
    store.insert(job, owner="node-1/4242/dead", lease_until=time.time() + 3600)
    store.transition(job.uuid, JobState.RUNNING, "running", start_time=1.0)
    restarted = JobRunner(store, node="node-1")
    other_node = JobRunner(engine.job_store(), node="node-2")
    seen: list[bool] = []
    for runner in (restarted, other_node):
        runner.register(JobKind.DELETE_PACKAGE,
                        lambda ctx: seen.append(ctx.taken_over) or "finished")
    try:
        assert other_node.claim_available() == 0  # not provably dead for another node
        assert restarted.claim_available() == 1
        wait_for(lambda: store.get(job.uuid).state is JobState.SUCCESS)
        assert seen == [True]
    finally:
        restarted.shutdown()
        other_node.shutdown()
