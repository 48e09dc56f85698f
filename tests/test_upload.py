"""POST /api/cluster/software/upload: multipart uploads, ONTAP's checks, streaming."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest
from netapp_ontap.error import NetAppRestError
from netapp_ontap.resources import Software, SoftwarePackage

from pkgfactory import make_package

UPLOAD = "/api/cluster/software/upload"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def staging_files(swdepot) -> list[Path]:
    return [p for root in swdepot.settings.store_roots for p in (root / ".staging").rglob("*.part")]


def stored_files(swdepot) -> list[Path]:
    return [p for root in swdepot.settings.store_roots for p in (root / "packages").rglob("*")
            if p.is_file()]


def test_upload_with_full_client_path_keeps_base_name(api, swdepot, tmp_path):
    client_dir = tmp_path / "client" / "dir"
    client_dir.mkdir(parents=True)
    pkg = make_package(client_dir, "9171_q_image.tgz", "9.17.1")
    with pkg.open("rb") as fh:
        response = api.post(UPLOAD, files={"file": (str(pkg), fh, "application/octet-stream")})
    assert response.status_code == 202, response.text
    job = api.wait_job(response.json()["job"]["uuid"])
    assert job["state"] == "success" and job["description"] == "POST /api/cluster/software/upload"
    record = api.get("/api/cluster/software/packages/9.17.1").json()
    assert record["file_name"] == "9171_q_image.tgz"
    assert record["sha256"] == sha256(pkg) and record["size"] == pkg.stat().st_size
    copies = stored_files(swdepot)
    assert len(copies) == 2 and all(sha256(c) == sha256(pkg) for c in copies)
    assert staging_files(swdepot) == []


def test_netapp_ontap_software_upload(ontap, api, tmp_path):
    pkg = make_package(tmp_path, "swdepot-9.15.1.tgz", "9.15.1", size=16384)
    response = Software().upload(file=f"@{pkg}", poll_interval=0.2)
    assert response.http_response.json()["state"] == "success"
    assert SoftwarePackage.find(version="9.15.1") is not None


def test_netapp_ontap_upload_of_duplicate_raises_code(ontap, tmp_path):
    pkg = make_package(tmp_path, "dup-9.14.1.tgz", "9.14.1", size=4096)
    Software().upload(file=f"@{pkg}", poll_interval=0.2)
    with pytest.raises(NetAppRestError) as info:
        Software().upload(file=f"@{pkg}", poll_interval=0.2)
    assert info.value.response_body["error"]["code"] == "10551327"


def test_upload_with_return_timeout_answers_201_when_done(api, tmp_path):
    pkg = make_package(tmp_path, "fast-9.13.1.tgz", "9.13.1", size=4096)
    response = api.post(UPLOAD + "?return_timeout=30", files={"file": pkg.open("rb")})
    assert response.status_code == 201, response.text


def test_not_multipart_is_10551808(api):
    response = api.post(UPLOAD, json={"file": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "10551808"


def test_two_files_is_10551807_and_nothing_is_kept(api, swdepot, tmp_path):
    one = make_package(tmp_path, "one-9.12.1.tgz", "9.12.1", size=4096)
    two = make_package(tmp_path, "two-9.11.1.tgz", "9.11.1", size=4096)
    response = api.post(UPLOAD, files=[("file", one.open("rb")), ("file", two.open("rb"))])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "10551807"
    assert api.get("/api/cluster/software/packages").json()["num_records"] == 0
    jobs = api.get("/api/cluster/jobs").json()["records"]
    assert len(jobs) == 1  # the job the first file started ends with the request's error
    job = api.wait_job(jobs[0]["uuid"])
    assert (job["state"], job["code"]) == ("failure", 10551807)
    assert staging_files(swdepot) == [] and stored_files(swdepot) == []


def test_form_field_is_unexpected_and_missing_file_is_required(api):
    response = api.post(UPLOAD, files={"note": (None, "hello")})
    assert response.json()["error"]["code"] == "262179"
    response = api.post(UPLOAD, data={}, files={"": (None, "")},
                        headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400


def test_a_file_under_another_field_name_is_refused_before_any_job(api, tmp_path):
    pkg = make_package(tmp_path, "other-9.9.2.tgz", "9.9.2", size=4096)
    response = api.post(UPLOAD, files={"package": pkg.open("rb")})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "262179" and error["target"] == "package"
    assert 'form field "file"' in error["message"]
    assert api.get("/api/cluster/jobs").json()["num_records"] == 0  # no job was started


def test_file_name_too_long_is_10551799(api):
    name = "a" * 300 + ".tgz"
    response = api.post(UPLOAD, files={"file": (name, b"data")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "10551799"


def test_no_space_is_10551804(settings, start_service, tmp_path):
    svc = start_service(settings, min_free_bytes=1 << 62)
    pkg = make_package(tmp_path, "big-9.10.1.tgz", "9.10.1", size=4096)
    response = svc.api.post(UPLOAD, files={"file": pkg.open("rb")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "10551804"


def test_invalid_package_fails_the_job_and_keeps_nothing(api, swdepot):
    response = api.post(UPLOAD, files={"file": ("9171_q_image.tgz", b"not a gzip tar" * 100)})
    assert response.status_code == 202
    job = api.wait_job(response.json()["job"]["uuid"])
    assert job["state"] == "failure" and job["code"] == 10551359
    assert staging_files(swdepot) == [] and stored_files(swdepot) == []


def test_duplicate_name_is_refused_before_the_body(api, tmp_path):
    pkg = make_package(tmp_path, "same-9.9.1.tgz", "9.9.1", size=4096)
    assert api.wait_job(api.post(UPLOAD, files={"file": pkg.open("rb")}).json()["job"]["uuid"]
                        )["state"] == "success"
    response = api.post(UPLOAD, files={"file": pkg.open("rb")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "10551327"
    assert response.json()["error"]["target"] == "file"  # what named it: the form field


def _held_back(pkg: Path, hold) -> tuple[dict[str, str], object]:
    """A chunked multipart upload of ``pkg`` whose second half waits for ``hold()``."""
    data = pkg.read_bytes()
    boundary = "swdepot-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{pkg.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        yield data[: len(data) // 2]
        hold()
        yield data[len(data) // 2 :]
        yield tail

    return {"content-type": f"multipart/form-data; boundary={boundary}"}, body()


def _wait_for_staged_bytes(swdepot) -> list[Path]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        staged = staging_files(swdepot)
        if len(staged) == 2 and all(p.stat().st_size > 0 for p in staged):
            return staged
        time.sleep(0.05)
    raise AssertionError("nothing was staged")


def _open_in(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            found.add(os.readlink(fd))
    return found


def test_upload_streams_while_the_request_is_still_open(api, swdepot, tmp_path):
    """The job has stored bytes before the client has sent them all (chunked body)."""
    pkg = make_package(tmp_path, "stream-9.8.1.tgz", "9.8.1", size=6 << 20)
    seen: dict[str, object] = {}

    def hold():  # the rest waits until the job shows bytes staged
        staged = {str(p) for p in _wait_for_staged_bytes(swdepot)}
        running = [j for j in api.get("/api/cluster/jobs?fields=description,state"
                                      "&state=running").json()["records"]
                   if "upload" in j["description"]]
        seen["running"] = bool(running)
        # staged, hashed and inspected by the worker process; the service holds none
        worker = swdepot.service.workers.pids()[0]
        seen["in worker"] = staged <= _open_in(worker)
        seen["in service"] = staged & _open_in(os.getpid())

    headers, body = _held_back(pkg, hold)
    response = api.post(UPLOAD, data=body, headers=headers)
    assert response.status_code == 202, response.text
    assert seen == {"running": True, "in worker": True, "in service": set()}
    assert api.wait_job(response.json()["job"]["uuid"])["state"] == "success"
    record = api.get("/api/cluster/software/packages/9.8.1").json()
    assert record["sha256"] == sha256(pkg)
    assert staging_files(swdepot) == []


def test_a_worker_killed_during_an_upload_fails_it_and_keeps_nothing(api, swdepot, tmp_path):
    pkg = make_package(tmp_path, "killed-9.8.2.tgz", "9.8.2", size=6 << 20)
    killed: list[int] = []

    def hold():
        _wait_for_staged_bytes(swdepot)
        killed.append(swdepot.service.workers.pids()[0])
        os.kill(killed[0], signal.SIGKILL)

    headers, body = _held_back(pkg, hold)
    response = api.post(UPLOAD, data=body, headers=headers)
    job = api.wait_job(response.json()["job"]["uuid"])
    assert job["state"] == "failure" and job["code"] == 10551801, job
    assert "the worker process receiving it ended" in job["message"]
    assert staging_files(swdepot) == [] and stored_files(swdepot) == []
    deadline = time.monotonic() + 20  # a new worker takes the next upload
    while swdepot.service.workers.pids() in ([], killed):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = make_package(tmp_path, "again-9.8.3.tgz", "9.8.3")
    with again.open("rb") as fh:
        response = api.post(UPLOAD, files={"file": (again.name, fh)})
    assert api.wait_job(response.json()["job"]["uuid"])["state"] == "success"


def test_client_disconnect_fails_the_job_and_keeps_nothing(api, swdepot, tmp_path):
    boundary = "cut"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"cut-9.7.1.tgz\"\r\n\r\n").encode() + b"x" * (2 << 20)
    request = (f"POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic "
               "YWRtaW46YWRtaW4tc2VjcmV0\r\nContent-Type: multipart/form-data; boundary="
               f"{boundary}\r\nContent-Length: {len(head) + 10_000_000}\r\n\r\n").encode()
    context = ssl.create_default_context(cafile=str(swdepot.cert))
    with socket.create_connection(("127.0.0.1", swdepot.settings.port)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(request + head)
        deadline = time.monotonic() + 30
        while not api.get("/api/cluster/jobs").json()["num_records"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    uuid = api.get("/api/cluster/jobs").json()["records"][0]["uuid"]
    job = api.wait_job(uuid)
    assert job["state"] == "failure" and job["code"] == 10551801
    assert staging_files(swdepot) == [] and stored_files(swdepot) == []
