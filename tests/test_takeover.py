"""Jobs that outlive their process, across real ``swdepot serve`` processes."""

from __future__ import annotations

import filecmp
import hashlib
import os
import signal
import time
from pathlib import Path

from pkgfactory import make_package
from servers import Fault, FTPTestServer
from service import ServiceProcess, free_port

DOWNLOAD = "/api/cluster/software/download"


def test_a_cancel_sent_to_one_process_stops_the_download_another_runs(
        service_process, http_server_noauth, content_dir, import_dir):
    make_package(content_dir, "slow.tgz", "9.15.1", size=4 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=256 * 1024)
    runs = service_process.start()
    other = ServiceProcess(service_process.data_dir, import_dir, free_port())
    try:
        asks = other.start(args=("--node-name", "swdepot-02"))
        uuid = runs.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")}
                         ).json()["job"]["uuid"]
        runs.wait_download_bytes(100_000)
        assert asks.get(f"/api/cluster/jobs/{uuid}").json()["node"]["name"] == "swdepot-01"
        answer = asks.patch(f"/api/cluster/jobs/{uuid}?action=cancel")
        assert answer.status_code == 200, answer.text
        job = asks.wait_job(uuid)
        assert job["state"] == "failure" and "canceled" in job["message"], job
        assert list((service_process.data_dir / "store").rglob("*.part")) == []
        assert runs.get("/api/cluster/software/packages").json()["num_records"] == 0
        again = asks.patch(f"/api/cluster/jobs/{uuid}?action=cancel")
        assert again.json()["error"]["code"] == "458762"  # terminal: nothing to cancel
        asks.session.close()
    finally:
        other.stop()
        runs.session.close()


def _staged(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "store").rglob("*.part"))


def _kill_at(service: ServiceProcess, api, uuid: str, fraction: float, size: int) -> None:
    api.wait_download_bytes(fraction * size, timeout=60)
    assert api.get(f"/api/cluster/jobs/{uuid}").json()["state"] == "running"
    api.session.close()
    service.kill()


def _assert_stored_once(api, data_dir: Path, pkg: Path) -> None:
    record = api.get("/api/cluster/software/packages/9.15.1?fields=sha256").json()
    assert record["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    copies = [p for p in (data_dir / "store").rglob(pkg.name)]
    assert len(copies) == 2
    assert all(filecmp.cmp(c, pkg, shallow=False) for c in copies)
    assert _staged(data_dir) == []


def _big_download(service_process, server, content_dir, size: int, rate: int):
    """``swdepot serve`` started on a ``size``-byte package the server trickles at
    ``rate`` bytes/s, its download posted: (the package, the API, the job's uuid)."""
    pkg = make_package(content_dir, "big.tgz", "9.15.1", size=size)
    server.faults["/big.tgz"] = Fault("trickle", bytes_per_second=rate)
    api = service_process.start()
    uuid = api.post(DOWNLOAD, json={"url": server.url("big.tgz")}).json()["job"]["uuid"]
    return pkg, api, uuid


def test_a_download_killed_at_40_percent_continues_from_its_staged_bytes(
        service_process, http_server_noauth, content_dir):
    """SIGKILL of the whole service (its intake and transfer children die with it); the
    restarted service takes the job over and asks only for the rest, with ``Range`` and
    ``If-Range`` carrying the first response's validator."""
    size = 50 << 20
    pkg, api, uuid = _big_download(service_process, http_server_noauth, content_dir, size,
                                   10 << 20)
    _kill_at(service_process, api, uuid, 0.4, size)
    staged = _staged(service_process.data_dir)
    assert len(staged) == 2
    resume_at = min(p.stat().st_size for p in staged) // (1 << 20) * (1 << 20)
    assert resume_at >= 8 << 20

    http_server_noauth.faults.clear()
    api = service_process.start()
    job = api.wait_job(uuid, timeout=60)
    assert job["state"] == "success", job
    ranges = [r for r in http_server_noauth.requests_for("/big.tgz") if r.header("Range")]
    assert len(ranges) == 1, [r.headers for r in http_server_noauth.requests_for("/big.tgz")]
    assert ranges[0].header("Range") == f"bytes={resume_at}-"
    assert ranges[0].header("If-Range")  # the first response's ETag or Last-Modified
    assert ranges[0].status == 206
    _assert_stored_once(api, service_process.data_dir, pkg)
    api.session.close()


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]


def test_a_worker_killed_at_40_percent_is_replaced_and_the_job_continues(
        service_process, http_server_noauth, content_dir):
    """SIGKILL of the download's worker process alone (its transfer dies with it): the
    service's supervisor forks a new worker through the zygote, and the job continues
    on it from the staged bytes, asking only for the rest."""
    size = 50 << 20
    pkg, api, uuid = _big_download(service_process, http_server_noauth, content_dir, size,
                                   10 << 20)
    assert service_process.proc is not None
    (zygote,) = _children(service_process.proc.pid)
    (worker,) = _children(zygote)
    api.wait_download_bytes(0.4 * size, timeout=60)
    os.kill(worker, signal.SIGKILL)
    http_server_noauth.faults.clear()
    job = api.wait_job(uuid, timeout=60)
    assert job["state"] == "success", job
    ranges = http_server_noauth.get_ranges("/big.tgz")
    assert len(ranges) == 2 and ranges[0] is None, ranges
    assert int(ranges[1].removeprefix("bytes=").removesuffix("-")) >= 8 << 20
    _assert_stored_once(api, service_process.data_dir, pkg)
    # A worker forked for a busy moment (the task took one while the replacement was
    # still being forked) is retired when handed back: it exits once its socket closes
    # and the zygote reaps it within a second, so the count settles rather than is.
    deadline = time.monotonic() + 10
    while len(replacement := _children(zygote)) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(replacement) == 1 and replacement != [worker], replacement
    assert service_process.proc.poll() is None  # the service itself never stopped
    api.session.close()


def test_an_ftp_download_killed_mid_transfer_continues_with_rest(
        service_process, content_dir, import_dir):
    size = 24 << 20
    pkg = make_package(content_dir, "big.tgz", "9.15.1", size=size)
    with FTPTestServer(content_dir, send_limit=4 << 20) as ftp:
        api = service_process.start()
        uuid = api.post(DOWNLOAD, json={"url": ftp.url("big.tgz")}).json()["job"]["uuid"]
        _kill_at(service_process, api, uuid, 0.4, size)
        staged = _staged(service_process.data_dir)
        resume_at = min(p.stat().st_size for p in staged) // (1 << 20) * (1 << 20)
        assert resume_at > 0
        api = service_process.start()
        job = api.wait_job(uuid, timeout=60)
        assert job["state"] == "success", job
        assert ftp.retr_offsets == [0, resume_at]  # the rest only, from where staging ended
        _assert_stored_once(api, service_process.data_dir, pkg)
        api.session.close()


def test_a_download_whose_file_changed_while_its_process_was_dead_starts_over(
        service_process, http_server_noauth, content_dir):
    """The validator no longer matches: the taker-over's HEADs (ONTAP's fetch sequence)
    show another ETag and Last-Modified, so it keeps nothing of the old bytes and asks
    for the whole new file at once, without a wasted ``Range`` request."""
    size = 16 << 20
    _, api, uuid = _big_download(service_process, http_server_noauth, content_dir, size,
                                 4 << 20)
    _kill_at(service_process, api, uuid, 0.4, size)
    http_server_noauth.faults.clear()
    old_mtime = (content_dir / "big.tgz").stat().st_mtime
    new = make_package(content_dir, "big.tgz", "9.15.1", size=size, seed=7)
    os.utime(new, (old_mtime + 60, old_mtime + 60))  # another ETag and Last-Modified
    api = service_process.start()
    job = api.wait_job(uuid, timeout=60)
    assert job["state"] == "success", job
    requests = http_server_noauth.requests_for("/big.tgz")
    assert [r.method for r in requests] == ["HEAD"] * 3 + ["GET"] + ["HEAD"] * 3 + ["GET"]
    assert not any(r.header("Range") or r.header("If-Range") for r in requests)
    _assert_stored_once(api, service_process.data_dir, new)
    api.session.close()


def test_a_download_running_when_the_service_is_stopped_is_taken_over_by_its_restart(
        service_process, http_server_noauth, content_dir):
    """SIGTERM is a stop, not a cancel: the job is released, not failed, and the node's
    next process finishes it."""
    size = 8 << 20
    pkg, api, uuid = _big_download(service_process, http_server_noauth, content_dir, size,
                                   2 << 20)
    api.wait_download_bytes(size // 4)
    api.session.close()
    service_process.stop()
    assert service_process.proc is not None and service_process.proc.returncode != -9
    http_server_noauth.faults.clear()
    api = service_process.start()
    job = api.wait_job(uuid, timeout=60)
    assert job["state"] == "success", job
    _assert_stored_once(api, service_process.data_dir, pkg)
    api.session.close()
