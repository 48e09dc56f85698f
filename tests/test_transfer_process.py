"""A download's intake runs in a forked child (software/ingest_process.py), and its
transfer in a child of that child (transfer/process.py).

Every download test already goes through them (it is the default; cancel is tested in
test_job_actions.py); these cover what is particular to them: each really is another
process, neither holds the service's descriptors (the intake only the staging files it
opened itself), both run at the download's CPU priority while the service keeps its own,
the death of either fails the job cleanly and leaves nothing staged,
and the in-thread engine still works.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path

from pkgfactory import make_package
from servers import Fault
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


def _wait_for_child(parent: int | None = None, deadline: float = 20.0) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        children = _children(parent or os.getpid())
        if children:
            return children[0]
        time.sleep(0.02)
    raise AssertionError("no child process appeared")


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _open_files(pid: int) -> dict[int, str]:
    """Descriptors above stdio that name files (not sockets, pipes or anonymous inodes)."""
    fds = {int(fd.name): os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    return {fd: target for fd, target in fds.items()
            if fd > 2 and not target.startswith(("socket:", "anon_inode:", "pipe:"))}


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
    assert swdepot.service.downloads._elsewhere is not None
    uuid = _start_slow_download(swdepot.api, http_server_noauth, content_dir, "child.tgz",
                                "9.18.1")
    intake = _wait_for_child()
    transfer = _wait_for_child(intake)
    deadline = time.monotonic() + 20  # bytes flowing: both are past their start-up
    while not swdepot.api.get("/api/cluster/software/download").json().get("bytes_done"):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    # the intake: stdio, its sockets, and the two staging files it opened itself; not the
    # database, nor anything else of the service's
    staging = {str(p) for p in _staged(swdepot)}
    assert len(staging) == 2
    assert set(_open_files(intake).values()) == staging
    # the transfer: stdio, its socket to the intake, and libcurl's own connection
    assert _open_files(transfer) == {}, "the transfer kept files open"
    # both children, every thread, at the download's priority; the service at the default
    assert swdepot.settings.transfer_nice == 10
    assert _nices(intake) == {10}
    assert _nices(transfer) == {10}
    assert _nices(os.getpid()) == {0}
    assert swdepot.api.wait_job(uuid)["state"] == "success"
    assert _children(os.getpid()) == []  # reaped
    assert _staged(swdepot) == []  # adopted and committed by the service


def test_a_killed_transfer_process_fails_the_job_and_keeps_nothing(swdepot, http_server_noauth,
                                                                   content_dir):
    uuid = _start_slow_download(swdepot.api, http_server_noauth, content_dir, "killed.tgz",
                                "9.18.2")
    os.kill(_wait_for_child(_wait_for_child()), signal.SIGKILL)
    job = swdepot.api.wait_job(uuid)
    assert job["state"] == "failure"
    assert "the transfer process ended unexpectedly" in job["message"]
    assert swdepot.api.get("/api/cluster/software/packages").json()["num_records"] == 0
    assert _staged(swdepot) == []
    # the next download works
    make_package(content_dir, "after.tgz", "9.18.3")
    assert swdepot.api.download(http_server_noauth.url("after.tgz"))["state"] == "success"


def test_a_killed_intake_process_is_replaced_and_continues_from_its_staged_bytes(
        swdepot, http_server_noauth, content_dir):
    """The intake (the download's worker process) is SIGKILLed: the job's thread starts
    a new one, which continues from what the first had staged and checkpointed."""
    pkg = make_package(content_dir, "gone.tgz", "9.18.4", size=3 << 20)
    http_server_noauth.faults["/gone.tgz"] = Fault("trickle", bytes_per_second=1 << 20)
    uuid = swdepot.api.post("/api/cluster/software/download",
                            json={"url": http_server_noauth.url("gone.tgz")}
                            ).json()["job"]["uuid"]
    intake = _wait_for_child()
    transfer = _wait_for_child(intake)
    swdepot.api.wait_download_bytes((3 << 20) // 2)
    os.kill(intake, signal.SIGKILL)
    deadline = time.monotonic() + 10  # the transfer dies with its parent
    while _alive(transfer):
        assert time.monotonic() < deadline, "the transfer outlived the intake"
        time.sleep(0.02)
    http_server_noauth.faults.clear()
    job = swdepot.api.wait_job(uuid)
    assert job["state"] == "success", job
    ranges = [r.header("Range") for r in http_server_noauth.requests_for("/gone.tgz")]
    assert len(ranges) == 2 and ranges[0] is None, ranges
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert resumed_at > 0 and resumed_at % (1 << 20) == 0  # the rest only, whole MiBs kept
    record = swdepot.api.get("/api/cluster/software/packages/9.18.4?fields=sha256").json()
    assert record["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    assert _staged(swdepot) == []
    assert _children(os.getpid()) == []


def test_an_intake_process_killed_again_and_again_fails_the_job_and_leaves_nothing(
        swdepot, http_server_noauth, content_dir):
    uuid = _start_slow_download(swdepot.api, http_server_noauth, content_dir, "gone.tgz",
                                "9.18.4")
    killed: set[int] = set()
    while len(killed) <= 2:  # the first intake and both of its replacements
        intake = _wait_for_child()
        if intake in killed or not _alive(intake):
            time.sleep(0.02)
            continue
        deadline = time.monotonic() + 20
        while len(_staged(swdepot)) < 2:
            assert time.monotonic() < deadline, "nothing was staged"
            time.sleep(0.02)
        os.kill(intake, signal.SIGKILL)
        killed.add(intake)
    job = swdepot.api.wait_job(uuid)
    assert job["state"] == "failure"
    assert "the download process ended unexpectedly" in job["message"]
    assert _staged(swdepot) == []  # what the dead intakes had staged, thrown away
    assert swdepot.api.get("/api/cluster/software/packages").json()["num_records"] == 0
    make_package(content_dir, "after.tgz", "9.18.3")
    assert swdepot.api.download(http_server_noauth.url("after.tgz"))["state"] == "success"


def test_the_in_thread_engine_still_works(settings, start_service, http_server_noauth,
                                          content_dir):
    service = start_service(settings, transfer_process=False)
    assert not isinstance(service.service.downloads._engine, ForkingEngine)
    make_package(content_dir, "thread.tgz", "9.18.5")
    assert service.api.download(http_server_noauth.url("thread.tgz"))["state"] == "success"
    assert _children(os.getpid()) == []
