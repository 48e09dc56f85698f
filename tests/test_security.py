"""Security: secrets never leak, FILE and redirects stay confined, logins are rate limited,
and the API server speaks only modern TLS."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import requests

from pkgfactory import make_package
from servers import Fault
from service import ADMIN_PASSWORD
from swdepot.api.http import http_status
from swdepot.loginlimit import LoginLimiter, TooManyFailures
from swdepot.transfer.url import Credentials, parse_download_url

DOWNLOAD = "/api/cluster/software/download"
SECRET = "Xq7-very-secret-pw"


def listed(api) -> list[str]:
    return [r["version"] for r in api.get("/api/cluster/software/packages").json()["records"]]


# --- passwords never leak ------------------------------------------------------------------------

def test_download_passwords_never_appear_in_responses_jobs_logs_or_files(
        swdepot, http_server, ftp_server, content_dir, caplog):
    api = swdepot.api
    make_package(content_dir, "ok.tgz", "9.1.1")
    make_package(content_dir, "flaky.tgz", "9.1.2", size=200 * 1024)
    http_server.faults["/flaky.tgz"] = Fault("reset", after_bytes=50_000, times=2)
    responses: list[requests.Response] = []
    host = f"127.0.0.1:{http_server.port}"
    with caplog.at_level(logging.DEBUG):
        # wrong password in the body (401), in an FTP URL (login denied), in a bad URL
        responses.append(api.post(DOWNLOAD, json={"url": http_server.url("ok.tgz"),
                                                  "username": "pkguser", "password": SECRET}))
        api.wait_job(responses[-1].json()["job"]["uuid"])
        responses.append(api.post(DOWNLOAD, json={
            "url": f"ftp://ftpuser:{SECRET}@127.0.0.1:{ftp_server.port}/ok.tgz"}))
        api.wait_job(responses[-1].json()["job"]["uuid"])
        responses.append(api.post(DOWNLOAD, json={"url": f"http://u:{SECRET}@{host}:bad/x"}))
        responses.append(api.post(DOWNLOAD + f"?password={SECRET}", json={"url": "x"}))
        # the right password, embedded in the URL, through resets and retries
        responses.append(api.post(DOWNLOAD, json={
            "url": f"http://pkguser:{http_server.password}@{host}/flaky.tgz"}))
        job = api.wait_job(responses[-1].json()["job"]["uuid"])
        assert job["state"] == "success", job
        responses.append(api.get("/api/cluster/jobs?fields=*"))
        responses.append(api.get(DOWNLOAD + "?fields=*"))
    assert listed(api) == ["9.1.2"]
    # the service's own log output (the test client's urllib3 lines are not swdepot's)
    server_log = "\n".join(caplog.handler.format(r) for r in caplog.records
                           if not r.name.startswith("urllib3"))
    assert "attempt 2" in server_log  # the retries were logged ...
    for secret in (SECRET, http_server.password):
        assert secret not in server_log  # ... without any password
        for response in responses:
            assert secret not in response.text, response.text
        for path in swdepot.settings.data_dir.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    # the server really received the embedded credentials
    assert http_server.requests_for("/flaky.tgz")[-1].header("authorization")


def test_credentials_are_masked_in_reprs_and_tracebacks():
    url, credentials = parse_download_url(f"ftp://user:{SECRET}@127.0.0.1/p.tgz")
    assert SECRET not in repr(credentials) and SECRET not in str(url) and SECRET not in repr(url)
    try:
        raise RuntimeError(f"failed with {credentials!r} for {url}")
    except RuntimeError as exc:
        import traceback

        assert SECRET not in "".join(traceback.format_exception(exc))
    assert repr(Credentials("u", SECRET)) == "Credentials(username='u', password=***)"


# --- FILE and redirects stay confined ---------------------------------------------------------

def test_file_url_tricks_stay_inside_the_import_directory(api, import_dir, tmp_path):
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    make_package(outside_dir, "secret.tgz", "9.2.1")
    (import_dir / "linkdir").symlink_to(outside_dir, target_is_directory=True)
    (import_dir / "%2e%2e").mkdir()  # a directory literally named like the encoding
    for url in ("file:///linkdir/secret.tgz", "file:///%2e%2e%2foutside/secret.tgz",
                "file:///..%2foutside/secret.tgz", "file:///%252e%252e/outside/secret.tgz",
                "file:///./../outside/secret.tgz", "file://usb0/../outside/secret.tgz",
                "file://otherhost/secret.tgz", f"file://{outside_dir}/secret.tgz",
                "file:///linkdir/../../outside/secret.tgz"):
        job = api.download(url)
        assert job["state"] == "failure" and job["code"] == 10551381, (url, job)
    for url in ("file:///secret.tgz%00.tgz", "file:///linkdir/"):
        assert api.post(DOWNLOAD, json={"url": url}).status_code == 400, url
    assert listed(api) == []


@pytest.mark.parametrize("location", ["file:///secret.tgz", "ftp://127.0.0.1/secret.tgz",
                                      "gopher://127.0.0.1/secret.tgz",
                                      "http://127.0.0.2:9/secret.tgz"])
def test_redirects_cannot_leave_http_or_the_allow_list(api, http_server_noauth, import_dir,
                                                       location):
    make_package(import_dir, "secret.tgz", "9.2.2")
    http_server_noauth.faults["/r.tgz"] = Fault("redirect", location=location)
    job = api.download(http_server_noauth.url("r.tgz"))
    assert job["state"] == "failure" and job["code"] == 10551381, job
    assert "gave up" not in job["message"]
    assert listed(api) == []


# --- login rate limiting --------------------------------------------------------------------------

def _limited_session(svc) -> tuple[requests.Session, str]:
    """A plain session to the service (no retries, no proxies) and the URL it guesses at."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(svc.cert)
    return session, f"https://127.0.0.1:{svc.settings.port}/api/cluster"


def test_failed_logins_are_rate_limited_with_429(settings, start_service):
    session, url = _limited_session(start_service(settings, login_max_failures=3,
                                                  login_failure_window=2))
    for _ in range(3):
        assert session.get(url, auth=("admin", "wrong"), timeout=30).status_code == 401
    refused = session.get(url, auth=("admin", "wrong"), timeout=30)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "262160"
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    # even the right password is not checked while the address waits
    assert session.get(url, auth=("admin", ADMIN_PASSWORD), timeout=30).status_code == 429
    deadline = time.monotonic() + 30
    while (status := session.get(url, auth=("admin", ADMIN_PASSWORD), timeout=30)
           .status_code) == 429:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status == 200
    session.close()


def test_x_forwarded_for_does_not_dodge_the_login_limit(settings, start_service):
    """Failures count against the peer address, never one a caller claims for itself."""
    session, url = _limited_session(start_service(settings, login_max_failures=2,
                                                  login_failure_window=30))
    for n in range(2):
        spoofed = {"X-Forwarded-For": f"198.51.100.{n}"}
        assert session.get(url, auth=("admin", "wrong"), headers=spoofed,
                           timeout=30).status_code == 401
    refused = session.get(url, auth=("admin", "wrong"),
                          headers={"X-Forwarded-For": "198.51.100.7"}, timeout=30)
    assert refused.status_code == 429
    session.close()


def test_login_limiter_counts_per_address_in_a_sliding_window():
    now = [0.0]
    limiter = LoginLimiter(max_failures=2, window=10, clock=lambda: now[0])
    limiter.failed("a")
    now[0] = 4
    limiter.failed("a")
    with pytest.raises(TooManyFailures) as refused:
        limiter.check("a")
    assert refused.value.retry_after == 6 and http_status(refused.value) == 429
    limiter.check("b")  # another address is not affected
    now[0] = 10.5  # the first failure left the window
    limiter.check("a")
    limiter.failed("a")
    with pytest.raises(TooManyFailures):
        limiter.check("a")
    limiter.succeeded("a")
    limiter.check("a")


# --- TLS of the API server ------------------------------------------------------------------------

def _handshake(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return f"{tls.version()} {tls.cipher()[0]}"


def _client(minimum: ssl.TLSVersion, maximum: ssl.TLSVersion, ciphers: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version, context.maximum_version = minimum, maximum
    context.set_ciphers(ciphers)
    return context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_api_server_accepts_only_modern_tls(service_process):
    service_process.start().session.close()
    port = service_process.port
    tls12 = _handshake(port, _client(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, "ALL"))
    assert tls12.startswith("TLSv1.2 ECDHE-ECDSA-") and ("GCM" in tls12 or "CHACHA" in tls12)
    assert _handshake(port, _client(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3, "ALL")) \
        .startswith("TLSv1.3")
    legacy = [
        _client(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2,
                "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0"),  # CBC suites
        _client(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, "ALL:@SECLEVEL=0"),  # old TLS
    ]
    for context in legacy:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(port, context)


def test_self_signed_key_is_private(service_process):
    service_process.start().session.close()
    key = service_process.data_dir / "tls" / "server.key"
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert Path(key).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_admin_password_is_stored_as_a_salted_slow_hash(swdepot):
    import sqlite3

    from swdepot.auth import verify_password

    with sqlite3.connect(swdepot.settings.database_path) as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE name = 'admin'").fetchone()
    scheme, iterations, _salt, _digest = stored.split("$")
    assert scheme == "pbkdf2_sha256" and int(iterations) >= 600_000  # OWASP's minimum
    assert verify_password(ADMIN_PASSWORD, stored) and not verify_password("guess", stored)
    assert ADMIN_PASSWORD not in stored
