"""Transient and permanent transfer faults, injected by real servers on 127.0.0.1.

Each test asserts the job's outcome AND the repository afterwards: the published copies
hold exactly the server's bytes, or nothing is listed and no staging file is left.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import time
from pathlib import Path

import pytest

from pkgfactory import make_package
from servers import Fault

DOWNLOAD = "/api/cluster/software/download"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_copies(svc) -> list[Path]:
    return [p for root in svc.settings.store_roots for p in root.rglob("*")
            if p.is_file() and ".staging" not in p.parts]


def staging_files(svc) -> list[Path]:
    return [p for root in svc.settings.store_roots for p in root.rglob("*.part")]


def assert_published(svc, pkg: Path, version: str) -> None:
    record = svc.api.get(f"/api/cluster/software/packages/{version}").json()
    assert record["sha256"] == sha256(pkg) and record["size"] == pkg.stat().st_size
    copies = stored_copies(svc)
    assert len(copies) == 2 and all(sha256(c) == sha256(pkg) for c in copies)
    assert staging_files(svc) == []


def assert_nothing_stored(svc) -> None:
    assert svc.api.get("/api/cluster/software/packages").json()["num_records"] == 0
    assert stored_copies(svc) == [] and staging_files(svc) == []


def gets(server, path: str):
    return [r for r in server.requests_for(path) if r.method == "GET"]


# --- resume after transient failures -------------------------------------------------------

def test_server_that_cuts_every_response_still_delivers_the_whole_file(
        swdepot, http_server_noauth, content_dir):
    pkg = make_package(content_dir, "cut.tgz", "9.8.1", size=600 * 1024)
    http_server_noauth.faults["/cut.tgz"] = Fault("truncate", after_bytes=150_000)
    job = swdepot.api.download(http_server_noauth.url("cut.tgz"))
    assert job["state"] == "success", job
    assert_published(swdepot, pkg, "9.8.1")
    requests = gets(http_server_noauth, "/cut.tgz")
    assert requests[0].header("range") is None and requests[0].header("if-range") is None
    offsets = [int(re.fullmatch(r"bytes=(\d+)-", r.header("range")).group(1))
               for r in requests[1:]]
    assert offsets == [150_000 * n for n in range(1, len(requests))]
    # every resumed request is conditional on the first response's validator
    assert all(r.header("if-range", "").startswith('"') for r in requests[1:])


def test_connection_reset_mid_body_resumes_at_the_byte_it_stopped(
        swdepot, http_server, content_dir):
    pkg = make_package(content_dir, "reset.tgz", "9.8.2", size=400 * 1024)
    http_server.faults["/reset.tgz"] = Fault("reset", after_bytes=123_456, times=1)
    job = swdepot.api.download(http_server.url("reset.tgz"), username=http_server.username,
                               password=http_server.password)
    assert job["state"] == "success", job
    assert_published(swdepot, pkg, "9.8.2")
    first, second = gets(http_server, "/reset.tgz")
    assert second.header("range") == "bytes=123456-"
    assert second.header("authorization") == first.header("authorization")


def test_5xx_is_retried_and_retry_after_is_honoured(swdepot, http_server_noauth, content_dir,
                                                    caplog):
    pkg = make_package(content_dir, "busy.tgz", "9.8.3")
    http_server_noauth.faults["/busy.tgz"] = Fault("status", status=503, retry_after=1, times=2)
    with caplog.at_level(logging.WARNING, logger="swdepot.transfer.retry"):
        job = swdepot.api.download(http_server_noauth.url("busy.tgz"))
    assert job["state"] == "success", job
    assert_published(swdepot, pkg, "9.8.3")
    assert len(gets(http_server_noauth, "/busy.tgz")) == 3
    waits = [float(w) for w in re.findall(r"attempt \d+ in ([\d.]+) s", caplog.text)]
    assert len(waits) == 2 and all(w >= 1.0 for w in waits), caplog.text


def test_persistent_5xx_gives_up_after_the_configured_retries(settings, start_service,
                                                              http_server_noauth, content_dir):
    svc = start_service(settings, retries=2)
    make_package(content_dir, "down.tgz", "9.8.4")
    http_server_noauth.faults["/down.tgz"] = Fault("status", status=502)
    job = svc.api.download(http_server_noauth.url("down.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551381
    assert "HTTP 502" in job["message"] and "gave up after 3 attempts" in job["message"]
    assert len(gets(http_server_noauth, "/down.tgz")) == 3
    assert_nothing_stored(svc)


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_permanent_http_errors_fail_at_once(swdepot, http_server_noauth, content_dir, status):
    make_package(content_dir, "p.tgz", "9.8.5")
    http_server_noauth.faults["/p.tgz"] = Fault("status", status=status)
    job = swdepot.api.download(http_server_noauth.url("p.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551381
    assert f"HTTP {status}" in job["message"] and "gave up" not in job["message"]
    assert len(gets(http_server_noauth, "/p.tgz")) == 1
    assert_nothing_stored(swdepot)


def test_tls_verification_failure_is_not_retried(settings, start_service, https_server,
                                                 content_dir):
    svc = start_service(settings, ca_files=(), use_system_ca=False)
    make_package(content_dir, "tls.tgz", "9.8.6")
    job = svc.api.download(https_server.url("tls.tgz"))
    assert job["state"] == "failure" and "gave up" not in job["message"]
    assert "certificate" in job["message"] or "TLS" in job["message"]
    assert_nothing_stored(svc)


def test_server_ignoring_ranges_makes_the_transfer_start_again_from_zero(
        swdepot, http_server_noauth, content_dir):
    pkg = make_package(content_dir, "norange.tgz", "9.8.7", size=300 * 1024)
    http_server_noauth.faults["/norange.tgz"] = Fault(
        "truncate", after_bytes=100_000, times=1, then=Fault("ignore_range"))
    job = swdepot.api.download(http_server_noauth.url("norange.tgz"))
    assert job["state"] == "success", job
    assert_published(swdepot, pkg, "9.8.7")  # not a splice: the sha256 covers the whole file
    requests = gets(http_server_noauth, "/norange.tgz")
    assert requests[1].header("range") == "bytes=100000-"
    assert requests[-1].header("range") is None  # started again from the first byte


def _replaced_during_resume(swdepot, server, content_dir, name: str, second: str) -> list:
    """Cut the first attempt short, swap the file for another package as the resume
    arrives (fault ``second`` answers it), and check the *new* file was published whole,
    never a splice of the two. Returns the server's GET log for further checks."""
    make_package(content_dir, name, "9.8.8", size=300 * 1024)
    newer = make_package(content_dir.parent, f"new-{name}", "9.8.9", size=300 * 1024)

    def replace_file() -> None:
        os.replace(newer, content_dir / name)
        os.utime(content_dir / name, ns=(1, 1))  # a different validator for sure

    extra = {"bytes_per_second": 1 << 30} if second == "trickle" else {}
    server.faults[f"/{name}"] = Fault(
        "truncate", after_bytes=100_000, times=1,
        then=Fault(second, times=1, on_hit=replace_file, **extra))
    expected = sha256(newer)
    job = swdepot.api.download(server.url(name))
    assert job["state"] == "success", job
    requests = gets(server, f"/{name}")
    assert requests[1].header("range") == "bytes=100000-" and requests[1].header("if-range")
    assert requests[-1].header("range") is None  # started again from the first byte
    record = swdepot.api.get("/api/cluster/software/packages/9.8.9").json()
    assert record["sha256"] == expected
    assert all(sha256(c) == expected for c in stored_copies(swdepot))
    return requests


def test_file_changed_between_attempts_is_never_spliced(swdepot, http_server_noauth,
                                                        content_dir):
    _replaced_during_resume(swdepot, http_server_noauth, content_dir, "moving.tgz", "trickle")


def test_lying_206_with_a_changed_etag_is_never_spliced(swdepot, http_server_noauth,
                                                        content_dir):
    """The server ignores If-Range and sends 206 from a new file: the ETag gives it away."""
    requests = _replaced_during_resume(swdepot, http_server_noauth, content_dir, "liar.tgz",
                                       "ignore_if_range")
    assert requests[1].status == 206  # the lie was told, and refused


# --- watchdogs and limits ----------------------------------------------------------------------

def test_trickling_server_hits_the_stall_watchdog(settings, start_service, http_server_noauth,
                                                  content_dir):
    svc = start_service(settings, stall_timeout=1, stall_min_speed=100_000)
    make_package(content_dir, "slow.tgz", "9.7.1", size=1 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=4096)
    job = svc.api.download(http_server_noauth.url("slow.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551381
    assert "stalled" in job["message"] and "100000 bytes per second" in job["message"]
    assert len(gets(http_server_noauth, "/slow.tgz")) == 1  # a stall is not retried
    assert_nothing_stored(svc)


def test_overall_time_limit_is_10551383(settings, start_service, http_server_noauth,
                                        content_dir):
    svc = start_service(settings, max_duration=2)
    make_package(content_dir, "long.tgz", "9.7.2", size=1 << 20)
    http_server_noauth.faults["/long.tgz"] = Fault("trickle", bytes_per_second=64 * 1024)
    job = svc.api.download(http_server_noauth.url("long.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551383, job
    assert "maximum time limit of 2 seconds" in job["message"]
    status = svc.api.get(DOWNLOAD).json()
    assert status["state"] == "failure" and status["code"] == 10551383
    assert_nothing_stored(svc)


def test_announced_size_above_the_maximum_is_refused_before_the_body(
        settings, start_service, http_server_noauth, content_dir):
    svc = start_service(settings, max_package_bytes=100_000)
    make_package(content_dir, "big.tgz", "9.7.3", size=400 * 1024)
    job = svc.api.download(http_server_noauth.url("big.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551381
    assert "larger than the configured maximum of 100000 bytes" in job["message"]
    assert svc.api.get(DOWNLOAD).json()["bytes_done"] == 0
    assert_nothing_stored(svc)


def test_file_import_above_the_maximum_is_refused(settings, start_service, import_dir):
    svc = start_service(settings, max_package_bytes=100_000)
    make_package(import_dir, "big.tgz", "9.7.4", size=400 * 1024)
    job = svc.api.download("file:///big.tgz")
    assert job["state"] == "failure" and "configured maximum" in job["message"]
    assert_nothing_stored(svc)


def test_ftp_transfer_cut_short_resumes_with_rest(swdepot, ftp_server, content_dir):
    pkg = make_package(content_dir, "ftp-cut.tgz", "9.6.1", size=400 * 1024)
    ftp_server.cut_retr_after = [100_000, 50_000]
    job = swdepot.api.download(ftp_server.url("ftp-cut.tgz"), username=ftp_server.username,
                               password=ftp_server.password)
    assert job["state"] == "success", job
    assert_published(swdepot, pkg, "9.6.1")
    assert ftp_server.retr_offsets == [0, 100_000, 150_000]


def test_ftp_file_replaced_between_attempts_starts_again(swdepot, ftp_server, content_dir):
    make_package(content_dir, "ftp-moving.tgz", "9.6.2", size=300 * 1024)
    newer = make_package(content_dir.parent, "ftp-newer.tgz", "9.6.3", size=200 * 1024)
    ftp_server.cut_retr_after = [100_000]
    # the second SIZE command (the first resumed attempt) finds a different file
    ftp_server.before_size = [None, lambda: os.replace(newer, content_dir / "ftp-moving.tgz")]
    expected = sha256(newer)
    job = swdepot.api.download(ftp_server.url("ftp-moving.tgz"))
    assert job["state"] == "success", job
    record = swdepot.api.get("/api/cluster/software/packages/9.6.3").json()
    assert record["sha256"] == expected
    assert all(sha256(c) == expected for c in stored_copies(swdepot))
    assert ftp_server.retr_offsets[0] == 0 and ftp_server.retr_offsets[-1] == 0


def test_a_refused_connection_is_said_while_it_is_retried(settings, start_service):
    """Whoever follows the job reads why it waits, within a second, not after the retries."""
    svc = start_service(settings, retries=3, retry_base_delay=1.0, retry_max_delay=4.0)
    with socket.socket() as closed:  # a port nobody listens on: every connect is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    response = svc.api.post("/api/cluster/software/download",
                            json={"url": f"http://127.0.0.1:{port}/refused-9.9.9.tgz"})
    uuid = response.json()["job"]["uuid"]
    started, seen = time.monotonic(), []
    while time.monotonic() - started < 20:
        job = svc.api.get(f"/api/cluster/jobs/{uuid}?fields=state,message").json()
        if job["message"] not in seen:
            seen.append(job["message"])
        if "retrying" in job["message"] or job["state"] == "failure":
            break
        time.sleep(0.05)
    assert time.monotonic() - started < 3, seen
    note = job["message"]
    assert note.startswith("Package download in progress; retrying: "), seen
    assert "refused" in note and "(attempt 2 of 4)" in note
    assert svc.api.get("/api/cluster/software/download").json()["message"] == \
        "Package download in progress"  # the status keeps ONTAP's text
    final = svc.api.wait_job(uuid, timeout=60)
    assert final["state"] == "failure" and "refused" in final["message"]
