"""A download's intake runs in a worker process (software/ingest_process.py) forked by
the service's zygote (zygote.py, workers.py), and its transfer in a child of the worker
(transfer/process.py).

Every download test already goes through them (it is the default; cancel is tested in
test_job_actions.py); these cover what is particular to them: each really is another
process, none holds the service's descriptors (the worker only the staging files it
opened itself), the worker and the transfer run at the download's CPU priority while
the service keeps its own, the worker logs through the service, a dead transfer or a
dead worker is replaced and the job continues from its staged bytes, a worker killed
again and again fails the job cleanly, and the in-thread engine still works.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from pkgfactory import make_package
from servers import Fault
from swdepot.service import Service
from swdepot.transfer.process import ForkingEngine

SLOW = 128 * 1024  # bytes per second: long enough to catch the child at work


def _children(pid: int) -> list[int]:
    """Live (not zombie) children of ``pid``, as the kernel lists them per thread."""
    found = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in listing.read_text().split():
            if _alive(int(child)):
                found.append(int(child))
    return found


def _wait_for_child(parent: int, deadline: float = 20.0, *, not_: int | None = None) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        children = [c for c in _children(parent) if c != not_]
        if children:
            return children[0]
        time.sleep(0.02)
    raise AssertionError("no child process appeared")


def _worker(swdepot, *, not_: int | None = None) -> int:
    """The (only) worker process of the service, once it is there."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = [p for p in swdepot.service.workers.pids() if p != not_ and _alive(p)]
        if pids:
            return pids[0]
        time.sleep(0.02)
    raise AssertionError("no worker process")


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _open_files(pid: int) -> dict[int, str]:
    """Descriptors above stdio that name files (not sockets, pipes, anonymous inodes or
    memory: a worker's control page)."""
    fds = {int(fd.name): os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    return {fd: target for fd, target in fds.items()
            if fd > 2 and not target.startswith(("socket:", "anon_inode:", "pipe:", "/memfd:"))}


def _nices(pid: int) -> set[int]:
    """The CPU priorities (nice) of every thread of ``pid``."""
    found = set()
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            found.add(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
    return found


def _staged(swdepot) -> list[Path]:
    return [p for root in swdepot.settings.store_roots for p in (root / ".staging").rglob("*.part")]


def _start_slow_download(api, http_server_noauth, content_dir, name: str, version: str) -> str:
    make_package(content_dir, name, version, size=2 * 1024 * 1024)
    http_server_noauth.faults[f"/{name}"] = Fault("trickle", bytes_per_second=SLOW)
    response = api.post("/api/cluster/software/download",
                        json={"url": http_server_noauth.url(name)})
    assert response.status_code == 202, response.text
    return response.json()["job"]["uuid"]


def test_the_intake_and_the_transfer_run_in_processes_holding_none_of_the_services_files(
        swdepot, http_server_noauth, content_dir):
    assert isinstance(swdepot.service.downloads._engine, ForkingEngine)
    zygote = swdepot.service.workers._zygote.pid
    worker = _worker(swdepot)
    assert zygote in _children(os.getpid())
    assert worker not in _children(os.getpid())  # the workers are the zygote's, not ours
    assert _children(zygote) == [worker]
    assert _open_files(zygote) == {} and _open_files(worker) == {}  # idle: nothing open
    uuid = _start_slow_download(swdepot.api, http_server_noauth, content_dir, "child.tgz",
                                "9.18.1")
    transfer = _wait_for_child(worker)
    deadline = time.monotonic() + 20  # bytes flowing: both are past their start-up
    while not swdepot.api.get("/api/cluster/software/download").json().get("bytes_done"):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    # the worker: stdio, its sockets and page, and the two staging files it opened
    # itself; not the database, nor anything else of the service's
    staging = {str(p) for p in _staged(swdepot)}
    assert len(staging) == 2
    assert set(_open_files(worker).values()) == staging
    # the transfer: stdio, its socket to the worker, and libcurl's own connection
    assert _open_files(transfer) == {}, "the transfer kept files open"
    assert _open_files(zygote) == {}
    # the worker and the transfer, every thread, at the download's priority; the
    # service at the default
    assert swdepot.settings.transfer_nice == 10
    assert _nices(worker) == {10}
    assert _nices(transfer) == {10}
    assert _nices(os.getpid()) == {0}
    assert swdepot.api.wait_job(uuid)["state"] == "success"
    assert _children(worker) == []  # the transfer was reaped
    assert _worker(swdepot) == worker  # the same worker takes the next task
    assert _staged(swdepot) == []  # adopted and committed by the service
    # between tasks the worker has one thread again: it may fork the next transfer
    assert len(list(Path(f"/proc/{worker}/task").iterdir())) == 1


def _half_way(swdepot, http_server_noauth, content_dir, name: str, version: str
              ) -> tuple[Path, Any, int, int]:
    """A 3 MiB download at 1 MiB/s, half of it staged: its package, the POST's response,
    its worker and its transfer."""
    pkg = make_package(content_dir, name, version, size=3 << 20)
    http_server_noauth.faults[f"/{name}"] = Fault("trickle", bytes_per_second=1 << 20)
    response = swdepot.api.post("/api/cluster/software/download",
                                json={"url": http_server_noauth.url(name)})
    worker = _worker(swdepot)
    transfer = _wait_for_child(worker)
    swdepot.api.wait_download_bytes((3 << 20) // 2)
    return pkg, response, worker, transfer


def test_a_killed_transfer_process_is_replaced_and_the_job_continues(
        swdepot, http_server_noauth, content_dir, caplog):
    pkg, started, worker, transfer = _half_way(swdepot, http_server_noauth, content_dir,
                                               "killed.tgz", "9.18.2")
    uuid = started.json()["job"]["uuid"]
    os.kill(transfer, signal.SIGKILL)
    http_server_noauth.faults.clear()
    job = swdepot.api.wait_job(uuid)
    assert job["state"] == "success", job
    ranges = http_server_noauth.get_ranges("/killed.tgz")
    assert len(ranges) == 2 and ranges[0] is None and ranges[1] is not None, ranges
    record = swdepot.api.get("/api/cluster/software/packages/9.18.2?fields=sha256").json()
    assert record["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    assert _worker(swdepot) == worker  # the worker itself lived on
    assert _staged(swdepot) == []
    # what the worker logged reached the service's own handlers, with the request id of
    # the POST that started the job
    said = [r for r in caplog.records if "the transfer process of a download died" in
            r.getMessage()]
    assert len(said) == 1 and said[0].process == worker
    assert said[0].request_id == started.headers["X-Request-Id"]


def test_a_killed_worker_is_replaced_and_the_job_continues_from_its_staged_bytes(
        swdepot, http_server_noauth, content_dir):
    """The worker running the intake is SIGKILLed: the pool starts a new one, and the
    job's thread has it continue from what the first had staged and checkpointed."""
    pkg, started, worker, transfer = _half_way(swdepot, http_server_noauth, content_dir,
                                               "gone.tgz", "9.18.4")
    uuid = started.json()["job"]["uuid"]
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 10  # the transfer dies with its parent
    while _alive(transfer):
        assert time.monotonic() < deadline, "the transfer outlived the worker"
        time.sleep(0.02)
    http_server_noauth.faults.clear()
    job = swdepot.api.wait_job(uuid)
    assert job["state"] == "success", job
    ranges = http_server_noauth.get_ranges("/gone.tgz")
    assert len(ranges) == 2 and ranges[0] is None, ranges
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert resumed_at > 0 and resumed_at % (1 << 20) == 0  # the rest only, whole MiBs kept
    record = swdepot.api.get("/api/cluster/software/packages/9.18.4?fields=sha256").json()
    assert record["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    assert _staged(swdepot) == []
    replacement = _worker(swdepot, not_=worker)
    assert swdepot.service.workers.pids() == [replacement]
    assert swdepot.service.workers.restarts == 1


def test_a_worker_killed_while_idle_is_replaced(swdepot, http_server_noauth, content_dir):
    worker = _worker(swdepot)
    os.kill(worker, signal.SIGKILL)
    replacement = _worker(swdepot, not_=worker)  # the supervisor notices within a second
    deadline = time.monotonic() + 20
    while swdepot.service.workers.pids() != [replacement]:
        assert time.monotonic() < deadline, swdepot.service.workers.pids()
        time.sleep(0.05)
    make_package(content_dir, "after.tgz", "9.18.3")
    assert swdepot.api.download(http_server_noauth.url("after.tgz"))["state"] == "success"


def test_a_worker_killed_again_and_again_fails_the_job_and_leaves_nothing(
        swdepot, http_server_noauth, content_dir):
    uuid = _start_slow_download(swdepot.api, http_server_noauth, content_dir, "gone.tgz",
                                "9.18.4")
    killed: set[int] = set()
    while len(killed) <= 2:  # the first intake's worker and both replacements'
        worker = _worker(swdepot)
        if worker in killed or not _children(worker):
            time.sleep(0.02)
            continue
        deadline = time.monotonic() + 20
        while len(_staged(swdepot)) < 2:
            assert time.monotonic() < deadline, "nothing was staged"
            time.sleep(0.02)
        os.kill(worker, signal.SIGKILL)
        killed.add(worker)
    job = swdepot.api.wait_job(uuid)
    assert job["state"] == "failure"
    assert "the download process ended unexpectedly" in job["message"]
    assert _staged(swdepot) == []  # what the dead intakes had staged, thrown away
    assert swdepot.api.get("/api/cluster/software/packages").json()["num_records"] == 0
    make_package(content_dir, "after.tgz", "9.18.3")
    assert swdepot.api.download(http_server_noauth.url("after.tgz"))["state"] == "success"


def test_an_upload_during_a_download_gets_a_worker_of_its_own(swdepot, http_server_noauth,
                                                               content_dir, tmp_path):
    uuid = _start_slow_download(swdepot.api, http_server_noauth, content_dir, "long.tgz",
                                "9.18.6")
    downloading = _worker(swdepot)
    _wait_for_child(downloading)  # its transfer: the worker is busy
    pkg = make_package(tmp_path, "meanwhile.tgz", "9.18.7")
    with pkg.open("rb") as fh:
        response = swdepot.api.post("/api/cluster/software/upload?return_timeout=30",
                                    files={"file": (pkg.name, fh)})
    assert response.status_code == 201, response.text  # done, while the download runs
    upload = swdepot.api.get(f"/api/cluster/jobs/{response.json()['job']['uuid']}").json()
    assert upload["state"] == "success", upload
    assert len(swdepot.service.workers.pids()) == 2  # one forked for the upload
    assert swdepot.api.get(f"/api/cluster/jobs/{uuid}").json()["state"] == "running"
    http_server_noauth.faults.clear()
    assert swdepot.api.wait_job(uuid)["state"] == "success"
    assert len(swdepot.service.workers.pids()) == 1  # the one forked for it, retired


def test_closing_the_service_ends_its_zygote_and_workers(settings):
    service = Service(settings)
    service.start()
    zygote = service.workers._zygote.pid
    workers = service.workers.pids()
    assert len(workers) == settings.worker_processes == 1
    service.close()
    assert not _alive(zygote) and not any(_alive(w) for w in workers)


def test_the_in_thread_engine_still_works(settings, start_service, http_server_noauth,
                                          content_dir):
    before = set(_children(os.getpid()))  # a browser driver of the session, say
    service = start_service(settings, transfer_process=False)
    assert not isinstance(service.service.downloads._engine, ForkingEngine)
    assert service.service.workers is None
    make_package(content_dir, "thread.tgz", "9.18.5")
    assert service.api.download(http_server_noauth.url("thread.tgz"))["state"] == "success"
    assert set(_children(os.getpid())) == before  # no process of its own
