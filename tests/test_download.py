"""POST/GET /api/cluster/software/download end to end, against real local servers."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from pkgfactory import make_package, make_plain_tgz, make_traversal_tgz
from servers import Fault, make_file

DOWNLOAD = "/api/cluster/software/download"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listed_versions(api) -> list[str]:
    body = api.get("/api/cluster/software/packages").json()
    return [r["version"] for r in body["records"]]


# --- happy paths over every scheme --------------------------------------------------------

def test_http_download_with_basic_auth_publishes_package(api, swdepot, http_server, content_dir):
    pkg = make_package(content_dir, "swdepot-9.17.1.tgz", "9.17.1")
    job = api.download(http_server.url("swdepot-9.17.1.tgz"), username=http_server.username,
                       password=http_server.password)
    assert job["state"] == "success", job
    assert job["message"] == "success" and job["code"] == 0
    assert job["description"] == "POST /api/cluster/software/download"
    assert "error" not in job and job["start_time"] and job["end_time"]
    # the server saw pre-emptive Basic credentials
    get = [r for r in http_server.requests if r.method == "GET"][-1]
    assert get.header("authorization").startswith("Basic ")
    # listed, with ISO-8601 create_time, and both node copies hold the same bytes
    record = api.get("/api/cluster/software/packages/9.17.1").json()
    assert record["version"] == "9.17.1" and "T" in record["create_time"]
    assert record["sha256"] == sha256(pkg) and record["size"] == pkg.stat().st_size
    copies = [p for root in swdepot.settings.store_roots for p in root.rglob("*.tgz")]
    assert len(copies) == 2 and all(sha256(c) == sha256(pkg) for c in copies)
    status = api.get(DOWNLOAD).json()
    assert (status["state"], status["code"]) == ("success", 0)


def test_https_download_verifies_server_with_installed_ca(api, https_server, content_dir):
    make_package(content_dir, "tls-pkg.tgz", "9.18.1")
    job = api.download(https_server.url("tls-pkg.tgz"), username=https_server.username,
                       password=https_server.password)
    assert job["state"] == "success", job
    assert listed_versions(api) == ["9.18.1"]


def test_https_untrusted_certificate_fails(settings, start_service, https_server, content_dir):
    svc = start_service(settings, ca_files=(), use_system_ca=True)
    make_package(content_dir, "tls-pkg.tgz", "9.18.1")
    job = svc.api.download(https_server.url("tls-pkg.tgz"), username=https_server.username,
                           password=https_server.password)
    assert job["state"] == "failure" and job["code"] == 10551381
    assert "certificate" in job["message"] or "TLS" in job["message"]


def test_ftp_download_with_user_and_anonymous(api, ftp_server, content_dir):
    make_package(content_dir, "ftp-user.tgz", "9.15.1")
    make_package(content_dir, "ftp-anon.tgz", "9.14.1")
    job = api.download(ftp_server.url("ftp-user.tgz"), username=ftp_server.username,
                       password=ftp_server.password)
    assert job["state"] == "success", job
    job = api.download(ftp_server.url("ftp-anon.tgz"))
    assert job["state"] == "success", job
    assert sorted(listed_versions(api)) == ["9.14.1", "9.15.1"]


def test_ftp_wrong_password_fails_without_leaking_it(api, ftp_server, content_dir):
    make_package(content_dir, "ftp-user.tgz", "9.15.1")
    job = api.download(ftp_server.url("ftp-user.tgz"), username=ftp_server.username,
                       password="wrong-pw-XYZ")
    assert job["state"] == "failure" and job["code"] == 10551381
    assert "login" in job["message"] and "wrong-pw-XYZ" not in str(job)


def test_file_download_from_import_dir(api, import_dir):
    make_package(import_dir, "local.tgz", "9.13.1")
    job = api.download("file:///local.tgz")
    assert job["state"] == "success", job
    assert listed_versions(api) == ["9.13.1"]


def test_file_url_cannot_leave_import_dir(api, import_dir, tmp_path):
    outside = make_package(tmp_path, "outside.tgz", "9.12.1")
    (import_dir / "link.tgz").symlink_to(outside)
    for url in ("file:///../outside.tgz", "file:///link.tgz", "file:///%2e%2e/outside.tgz",
                f"file://{outside}"):
        job = api.download(url)
        assert job["state"] == "failure", url
        assert job["code"] == 10551381, url
    assert listed_versions(api) == []


def test_ontap_named_image_without_manifest_takes_version_from_name(api, http_server_noauth,
                                                                  content_dir):
    make_plain_tgz(content_dir / "9161_q_image.tgz", {"image/kernel": b"k" * 1000})
    job = api.download(http_server_noauth.url("9161_q_image.tgz"))
    assert job["state"] == "success", job
    assert listed_versions(api) == ["9.16.1"] or listed_versions(api) == ["9.16.1"]


def test_firmware_is_stored_but_not_listed_and_repeat_is_refused(api, http_server_noauth,
                                                                content_dir):
    make_file(content_dir, "X357_S163A3T8ATE.NA51.LOD", 4096)
    url = http_server_noauth.url("X357_S163A3T8ATE.NA51.LOD")
    job = api.download(url)
    assert job["state"] == "success", job
    assert listed_versions(api) == []
    again = api.post(DOWNLOAD, json={"url": url})
    assert again.status_code == 400
    error = again.json()["error"]
    assert error["code"] == "10551496" and "Firmware file already exists" in error["message"]


# --- synchronous validation ------------------------------------------------------------------

def test_malformed_url_is_39387137(api):
    for url in ("not a url", "http://", "http:///x.tgz", "http://host:99999/x.tgz", ""):
        response = api.post(DOWNLOAD, json={"url": url})
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == "39387137", url
        assert response.json()["error"]["target"] == "url"


def test_unsupported_scheme_is_39387138(api):
    for url in ("gopher://127.0.0.1/x.tgz", "sftp://127.0.0.1/x.tgz", "data:text/plain,x"):
        response = api.post(DOWNLOAD, json={"url": url})
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] in ("39387138", "39387137"), url
    response = api.post(DOWNLOAD, json={"url": "gopher://127.0.0.1/x.tgz"})
    assert response.json()["error"]["code"] == "39387138"
    assert "FILE://, FTP://, or HTTPS://" in response.json()["error"]["message"]


def test_body_validation(api):
    cases = [
        ({"url": "http://127.0.0.1/x.tgz", "color": "red"}, "262179", "color"),
        ({"url": "http://127.0.0.1/x.tgz", "state": "running"}, "262196", "state"),
        ({"url": 5}, "262197", "url"),
        ({"username": "u"}, "262212", "url"),
    ]
    for body, code, target in cases:
        response = api.post(DOWNLOAD, json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == code, (body, response.text)
        assert response.json()["error"]["target"] == target
    bad_json = api.post(DOWNLOAD, data=b'{"url": ', headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "262199"
    array = api.post(DOWNLOAD, data=b"[1]", headers={"content-type": "application/json"})
    assert array.status_code == 400
    hal = api.post(DOWNLOAD, data=b'{"url": "gopher://h/x"}',
                   headers={"content-type": "application/hal+json"})
    assert hal.json()["error"]["code"] == "39387138"


def test_password_in_query_string_is_refused(api):
    response = api.post(DOWNLOAD + "?password=Zq9-hidden", json={"url": "http://127.0.0.1/x.tgz"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "262202"
    assert "Zq9-hidden" not in response.text


def test_return_timeout_out_of_range(api):
    response = api.post(DOWNLOAD + "?return_timeout=600", json={"url": "http://127.0.0.1/x"})
    assert response.status_code == 400
    assert response.json() == {"error": {
        "message": 'The value "600" is invalid for field "return_timeout" (<0..120>)',
        "code": "262197", "target": "return_timeout"}}


# --- return_timeout -------------------------------------------------------------------------

def test_return_timeout_success_is_201_with_location(api, http_server_noauth, content_dir):
    make_package(content_dir, "fast.tgz", "9.11.1")
    response = api.post(DOWNLOAD + "?return_timeout=30",
                        json={"url": http_server_noauth.url("fast.tgz")})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/cluster/software/download"
    job = response.json()["job"]
    assert job["_links"]["self"]["href"] == f"/api/cluster/jobs/{job['uuid']}"
    assert listed_versions(api) == ["9.11.1"]


def test_return_timeout_failure_is_the_jobs_error(api, http_server_noauth):
    response = api.post(DOWNLOAD + "?return_timeout=30",
                        json={"url": http_server_noauth.url("missing.tgz")})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "10551381" and "404" in error["message"]


def test_default_return_timeout_is_zero_and_answers_202(api, http_server_noauth, content_dir):
    make_package(content_dir, "slow.tgz", "9.5.0", size=1 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=64 * 1024)
    response = api.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")})
    assert response.status_code == 202
    assert response.headers["location"] == "/api/cluster/software/download"
    running = api.get(DOWNLOAD).json()
    assert running["state"] == "running" and running["code"] == 10551382
    assert running["message"] == "Package download in progress"
    timed = api.post(DOWNLOAD + "?return_timeout=1",
                     json={"url": http_server_noauth.url("slow.tgz")})
    assert timed.status_code == 400  # one at a time, see below
    http_server_noauth.stop()


def test_job_messages_follow_the_phases(api, http_server_noauth, content_dir):
    """ONTAP's recorded texts, in order: in progress, (processing,) then success / 0."""
    make_package(content_dir, "phases.tgz", "9.5.0", size=256 * 1024)
    http_server_noauth.faults["/phases.tgz"] = Fault("trickle", bytes_per_second=256 * 1024)
    response = api.post(DOWNLOAD, json={"url": http_server_noauth.url("phases.tgz")})
    uuid = response.json()["job"]["uuid"]
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = api.get(f"/api/cluster/jobs/{uuid}?fields=state,message,code").json()
        if not seen or seen[-1] != (job["state"], job["message"]):
            seen.append((job["state"], job["message"]))
        if job["state"] in ("success", "failure"):
            break
        time.sleep(0.01)
    assert seen[0][1] == "Package download in progress", seen
    assert seen[-1] == ("success", "success") and job["code"] == 0, seen
    phases = [("queued", "Package download in progress"),
              ("running", "Package download in progress"),
              ("running", "Package processing in progress"), ("success", "success")]
    assert all(step in phases for step in seen), seen
    assert [phases.index(step) for step in seen] == sorted(phases.index(step) for step in seen)


# --- one at a time, duplicates ----------------------------------------------------------------

def test_second_download_while_one_runs_is_refused(api, http_server_noauth, content_dir):
    make_package(content_dir, "slow.tgz", "9.5.0", size=1 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=32 * 1024)
    first = api.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")})
    assert first.status_code == 202
    second = api.post(DOWNLOAD, json={"url": http_server_noauth.url("other.tgz")})
    assert second.status_code == 400
    error = second.json()["error"]
    assert error["code"] == "10551382"
    assert "Software get operation already in progress" in error["message"]
    http_server_noauth.stop()


def test_concurrent_posts_start_exactly_one_download(api, http_server_noauth, content_dir):
    make_package(content_dir, "slow.tgz", "9.5.0", size=1 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=32 * 1024)
    statuses: list[int] = []

    def post() -> None:
        statuses.append(api.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")})
                        .status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [202] + [400] * 7
    http_server_noauth.stop()


def test_duplicate_file_name_is_10551327(api, http_server_noauth, content_dir):
    make_package(content_dir, "dup.tgz", "9.10.1")
    assert api.download(http_server_noauth.url("dup.tgz"))["state"] == "success"
    again = api.post(DOWNLOAD, json={"url": http_server_noauth.url("dup.tgz")})
    assert again.status_code == 400
    error = again.json()["error"]
    assert error["code"] == "10551327"
    assert "Package image with the same name already exists" in error["message"]


def test_same_version_under_another_name_is_refused(api, http_server_noauth, content_dir):
    make_package(content_dir, "a.tgz", "9.10.1")
    make_package(content_dir, "b.tgz", "9.10.1")
    assert api.download(http_server_noauth.url("a.tgz"))["state"] == "success"
    job = api.download(http_server_noauth.url("b.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551327
    assert listed_versions(api) == ["9.10.1"]


# --- transfer failures -----------------------------------------------------------------------

def test_bad_credentials_fail_with_401_and_no_password(api, http_server, content_dir):
    make_package(content_dir, "p.tgz", "9.9.1")
    job = api.download(http_server.url("p.tgz"), username="pkguser", password="not-the-pw-123")
    assert job["state"] == "failure" and job["code"] == 10551381
    assert "401" in job["message"] and "not-the-pw-123" not in str(job)
    status = api.get(DOWNLOAD).json()
    assert status["state"] == "failure" and status["code"] == 10551381
    assert status["message"] == job["message"]


def test_not_found_and_refused_fail(api, http_server_noauth):
    job = api.download(http_server_noauth.url("nope.tgz"))
    assert job["code"] == 10551381 and "404" in job["message"]
    job = api.download("http://127.0.0.1:9/x.tgz")  # nothing listens on the discard port
    assert job["code"] == 10551381 and "connect" in job["message"]
    assert "gave up after 6 attempts" in job["message"]  # refused is retried (server restarting)
    assert listed_versions(api) == []


def test_outbound_allow_list_blocks_other_addresses(api):
    job = api.download("http://127.0.0.2:9/x.tgz")
    assert job["state"] == "failure"
    assert "allow-list" in job["message"]


def test_redirect_to_forbidden_scheme_is_not_followed(api, http_server_noauth, import_dir):
    make_package(import_dir, "secret.tgz", "9.7.0")
    http_server_noauth.faults["/r.tgz"] = Fault("redirect", location="file:///secret.tgz")
    job = api.download(http_server_noauth.url("r.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551381
    assert listed_versions(api) == []


# --- package validation ------------------------------------------------------------------------

def test_corrupt_package_is_10551359(api, http_server_noauth, content_dir):
    make_file(content_dir, "junk.tgz", 100_000)
    job = api.download(http_server_noauth.url("junk.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551359, job
    assert "Failed to process the package" in job["message"]


def test_path_traversal_archive_is_refused(api, http_server_noauth, content_dir, tmp_path):
    make_traversal_tgz(content_dir / "9171_q_image.tgz")
    job = api.download(http_server_noauth.url("9171_q_image.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551359, job
    assert not (tmp_path / "etc" / "evil").exists()
    assert listed_versions(api) == []


def test_unsigned_package_refused_when_signatures_required(settings, start_service,
                                                           http_server_noauth, content_dir,
                                                           tmp_path):
    from swdepot.packages.build import generate_keypair

    trust = tmp_path / "trust"
    trust.mkdir()
    generate_keypair(tmp_path / "release.key", trust / "release.pub")
    svc = start_service(settings, require_signatures=True, trust_dir=trust)
    make_package(content_dir, "unsigned.tgz", "9.6.0")
    make_package(content_dir, "signed.tgz", "9.6.1", signing_key=tmp_path / "release.key")
    job = svc.api.download(http_server_noauth.url("unsigned.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551359
    assert "signature" in job["message"]
    job = svc.api.download(http_server_noauth.url("signed.tgz"))
    assert job["state"] == "success", job
    record = svc.api.get("/api/cluster/software/packages/9.6.1").json()
    assert record["signer"] == "release"


def test_password_never_stored_in_clear(api, swdepot, http_server, content_dir):
    make_package(content_dir, "p.tgz", "9.9.1")
    api.download(http_server.url("p.tgz"), username="pkguser", password="pkg-secret")
    api.download(http_server.url("q.tgz"), username="pkguser", password="pkg-secret")
    for path in swdepot.settings.data_dir.rglob("*"):
        if path.is_file():
            assert b"pkg-secret" not in path.read_bytes(), path
            assert b"admin-secret" not in path.read_bytes(), path
