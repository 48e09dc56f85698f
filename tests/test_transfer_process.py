"""The transfer runs in a forked child process (transfer/process.py).

Every download test already goes through it (it is the default; cancel is tested in
test_job_actions.py); these cover what is particular to it: the child really is another
process, it holds none of the parent's descriptors, its death fails the job cleanly,
and the in-thread engine still works.
"""

from __future__ import annotations

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
            status = Path(f"/proc/{child}/status")
            if status.exists() and "State:\tZ" not in status.read_text():
                found.append(int(child))
    return found


def _wait_for_child(deadline: float = 20.0) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        children = _children(os.getpid())
        if children:
            return children[0]
        time.sleep(0.02)
    raise AssertionError("no transfer process appeared")


def _start_slow_download(api, http_server_noauth, content_dir, name: str, version: str) -> str:
    make_package(content_dir, name, version, size=2 * 1024 * 1024)
    http_server_noauth.faults[f"/{name}"] = Fault("trickle", bytes_per_second=SLOW)
    response = api.post("/api/cluster/software/download",
                        json={"url": http_server_noauth.url(name)})
    assert response.status_code == 202, response.text
    return response.json()["job"]["uuid"]


def test_the_transfer_runs_in_a_child_holding_only_its_socket(swdepot, http_server_noauth,
                                                              content_dir):
    assert isinstance(swdepot.service.downloads._engine, ForkingEngine)
    uuid = _start_slow_download(swdepot.api, http_server_noauth, content_dir, "child.tgz",
                                "9.18.1")
    child = _wait_for_child()
    deadline = time.monotonic() + 20  # bytes flowing: the child is past its start-up
    while not swdepot.api.get("/api/cluster/software/download").json().get("bytes_done"):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    # stdio, its socket to the parent, and what libcurl opened itself (the connection)
    fds = {int(fd.name): os.readlink(fd) for fd in Path(f"/proc/{child}/fd").iterdir()}
    inherited = {fd: target for fd, target in fds.items()
                 if fd > 2 and not target.startswith(("socket:", "anon_inode:", "pipe:"))}
    assert inherited == {}, f"the child kept the parent's files open: {inherited}"
    assert swdepot.api.wait_job(uuid)["state"] == "success"
    assert _children(os.getpid()) == []  # reaped


def test_a_killed_transfer_process_fails_the_job_and_keeps_nothing(swdepot, http_server_noauth,
                                                                   content_dir):
    uuid = _start_slow_download(swdepot.api, http_server_noauth, content_dir, "killed.tgz",
                                "9.18.2")
    os.kill(_wait_for_child(), signal.SIGKILL)
    job = swdepot.api.wait_job(uuid)
    assert job["state"] == "failure"
    assert "the transfer process ended unexpectedly" in job["message"]
    assert swdepot.api.get("/api/cluster/software/packages").json()["num_records"] == 0
    staged = [p for root in swdepot.settings.store_roots for p in (root / ".staging").iterdir()]
    assert staged == []
    # the next download works
    make_package(content_dir, "after.tgz", "9.18.3")
    assert swdepot.api.download(http_server_noauth.url("after.tgz"))["state"] == "success"


def test_the_in_thread_engine_still_works(settings, start_service, http_server_noauth,
                                          content_dir):
    service = start_service(settings, transfer_process=False)
    assert not isinstance(service.service.downloads._engine, ForkingEngine)
    make_package(content_dir, "thread.tgz", "9.18.5")
    assert service.api.download(http_server_noauth.url("thread.tgz"))["state"] == "success"
    assert _children(os.getpid()) == []
