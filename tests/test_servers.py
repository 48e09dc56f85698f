"""Self-tests for the fixtures in ``tests/servers.py``.

The transfer tests built on these servers are only as trustworthy as the servers themselves:
if a "truncate" fault silently sent the whole body, a resume test would pass for the wrong
reason. So every behaviour the fixtures promise is checked here from the outside, with the
same client library swdepot uses (pycurl) and an independent one (requests / ftplib).
"""

from __future__ import annotations

import base64
import ftplib
import hashlib
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pycurl
import pytest
import requests
import trustme

from servers import (
    HTTP_PASSWORD,
    HTTP_USERNAME,
    ContentServer,
    Fault,
    FTPTestServer,
    make_file,
)

# Servers run in threads inside this process; a bug there shows up as a hang, not a failure.
pytestmark = pytest.mark.timeout(30)

MiB = 1 << 20
SIZE = 3 * MiB
PKG = "pkg.tgz"


# --------------------------------------------------------------------------------------------
# Client helpers
# --------------------------------------------------------------------------------------------


@dataclass
class CurlResult:
    """What a pycurl transfer produced (headers of the final response only)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    redirects: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def curl(
    url: str,
    *,
    cainfo: Path | None = None,
    userpwd: str | None = None,
    headers: list[str] | None = None,
    resume_from: int | None = None,
    nobody: bool = False,
    follow: bool = False,
    sink: io.BytesIO | None = None,
    configure: Callable[[pycurl.Curl], None] | None = None,
) -> CurlResult:
    """One pycurl transfer configured like a downloader would (1 MiB buffer, no proxy).

    Raises ``pycurl.error`` on transport errors; pass ``sink`` to inspect the bytes that
    arrived before such an error.
    """
    body = sink if sink is not None else io.BytesIO()
    response_headers: dict[str, str] = {}

    def on_header(line: bytes) -> None:
        text = line.decode("iso-8859-1").strip()
        if text.startswith("HTTP/"):
            response_headers.clear()  # a new response (after a redirect) starts here
        elif ":" in text:
            name, _, value = text.partition(":")
            response_headers[name.strip().lower()] = value.strip()

    handle = pycurl.Curl()
    try:
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.PROXY, "")  # never route loopback traffic through a proxy
        handle.setopt(pycurl.BUFFERSIZE, MiB)
        handle.setopt(pycurl.CONNECTTIMEOUT, 5)
        handle.setopt(pycurl.TIMEOUT, 20)
        handle.setopt(pycurl.WRITEDATA, body)
        handle.setopt(pycurl.HEADERFUNCTION, on_header)
        if cainfo is not None:
            handle.setopt(pycurl.CAINFO, str(cainfo))
        if userpwd is not None:
            handle.setopt(pycurl.USERPWD, userpwd)
        if headers:
            handle.setopt(pycurl.HTTPHEADER, headers)
        if resume_from is not None:
            handle.setopt(pycurl.RESUME_FROM_LARGE, resume_from)
        if nobody:
            handle.setopt(pycurl.NOBODY, 1)
        if follow:
            handle.setopt(pycurl.FOLLOWLOCATION, 1)
            handle.setopt(pycurl.MAXREDIRS, 5)
        if configure is not None:
            configure(handle)
        handle.perform()
        return CurlResult(
            status=handle.getinfo(pycurl.RESPONSE_CODE),
            body=body.getvalue(),
            headers=response_headers,
            redirects=handle.getinfo(pycurl.REDIRECT_COUNT),
        )
    finally:
        handle.close()


def session(auth: tuple[str, str] | None = None, verify: Path | bool = True) -> requests.Session:
    """A requests session isolated from the environment (no proxies, no ~/.netrc)."""
    s = requests.Session()
    s.trust_env = False
    s.auth = auth
    s.verify = str(verify) if isinstance(verify, Path) else verify
    return s


def requests_sha256(s: requests.Session, url: str) -> tuple[requests.Response, str]:
    """Stream a download in 1 MiB pieces and hash it, as a large-file client would."""
    digest = hashlib.sha256()
    with s.get(url, stream=True, timeout=20) as response:
        response.raise_for_status()
        for block in response.iter_content(MiB):
            digest.update(block)
    return response, digest.hexdigest()


def expected_basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def pkg(content_dir: Path) -> tuple[Path, str]:
    """The 3 MiB package every download test fetches."""
    return make_file(content_dir, PKG, SIZE)


# --------------------------------------------------------------------------------------------
# Plain downloads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("server_fixture", ["http_server", "https_server"])
def test_pycurl_download(
    request: pytest.FixtureRequest,
    server_fixture: str,
    pkg: tuple[Path, str],
    tls_ca_file: Path,
) -> None:
    server: ContentServer = request.getfixturevalue(server_fixture)
    result = curl(
        server.url(PKG),
        userpwd=f"{server.username}:{server.password}",
        cainfo=tls_ca_file if server.tls else None,
    )
    assert result.status == 200
    assert result.sha256 == pkg[1]
    assert result.headers["content-length"] == str(SIZE)
    assert result.headers["accept-ranges"] == "bytes"
    assert result.headers["etag"].startswith('"')
    assert result.headers["last-modified"].endswith(" GMT")
    [record] = server.requests
    assert (record.method, record.path, record.status) == ("GET", "/" + PKG, 200)
    assert record.header("authorization") == expected_basic(HTTP_USERNAME, HTTP_PASSWORD)
    assert server.errors == []


@pytest.mark.parametrize("server_fixture", ["http_server", "https_server"])
def test_requests_download(
    request: pytest.FixtureRequest,
    server_fixture: str,
    pkg: tuple[Path, str],
    tls_ca_file: Path,
) -> None:
    server: ContentServer = request.getfixturevalue(server_fixture)
    assert server.url(PKG).startswith(f"{'https' if server.tls else 'http'}://127.0.0.1:")
    assert server.username is not None and server.password is not None
    with session((server.username, server.password), verify=tls_ca_file) as s:
        response, digest = requests_sha256(s, server.url(PKG))
    assert response.status_code == 200
    assert digest == pkg[1]
    assert server.requests[0].headers["Authorization"] == expected_basic(
        HTTP_USERNAME, HTTP_PASSWORD
    )


def test_https_rejects_client_not_trusting_ca(
    https_server: ContentServer, pkg: tuple[Path, str], tmp_path: Path
) -> None:
    """Proves the TLS path really verifies: a client trusting another CA must fail."""
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with pytest.raises(pycurl.error) as excinfo:
        curl(https_server.url(PKG), cainfo=other_ca)
    assert excinfo.value.args[0] == pycurl.E_PEER_FAILED_VERIFICATION
    with session(verify=other_ca) as s, pytest.raises(requests.exceptions.SSLError):
        s.get(https_server.url(PKG), timeout=10)
    assert https_server.errors == []  # handshake failures are expected noise, not bugs


def test_http_server_noauth(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    assert http_server_noauth.username is None
    result = curl(http_server_noauth.url(PKG))
    assert (result.status, result.sha256) == (200, pkg[1])
    assert http_server_noauth.requests[0].header("Authorization") is None


def test_missing_file_is_404_and_no_traversal(
    http_server_noauth: ContentServer, content_dir: Path
) -> None:
    (content_dir.parent / "secret.txt").write_text("outside the document root")

    def as_is(handle: pycurl.Curl) -> None:
        handle.setopt(pycurl.PATH_AS_IS, 1)

    assert curl(http_server_noauth.url("nope.bin")).status == 404
    traversal = http_server_noauth.base_url + "/../secret.txt"
    assert curl(traversal, configure=as_is).status == 404


def test_concurrent_downloads(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: curl(http_server_noauth.url(PKG)).sha256, range(4)))
    assert results == [pkg[1]] * 4


def test_file_url(import_dir: Path) -> None:
    path, digest = make_file(import_dir, "local.tgz", SIZE, seed=3)
    result = curl(path.as_uri())
    assert result.sha256 == digest


def test_make_file_is_deterministic(tmp_path: Path) -> None:
    a, digest_a = make_file(tmp_path, "a.bin", MiB + 17, seed=5)
    _, digest_b = make_file(tmp_path, "b.bin", MiB + 17, seed=5)
    _, digest_c = make_file(tmp_path, "sub/c.bin", MiB + 17, seed=6)
    assert a.stat().st_size == MiB + 17
    assert digest_a == digest_b == hashlib.sha256(a.read_bytes()).hexdigest()
    assert digest_c != digest_a


# --------------------------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, (HTTP_USERNAME, "wrong"), ("someone", HTTP_PASSWORD)],
    ids=["no-credentials", "wrong-password", "wrong-user"],
)
def test_wrong_auth_is_401(
    http_server: ContentServer, pkg: tuple[Path, str], auth: tuple[str, str] | None
) -> None:
    with session(auth) as s:
        response = s.get(http_server.url(PKG), timeout=10)
        head = s.head(http_server.url(PKG), timeout=10)
    assert response.status_code == head.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="test"'
    assert head.headers["WWW-Authenticate"] == 'Basic realm="test"'


def test_pycurl_without_credentials_gets_401(
    http_server: ContentServer, pkg: tuple[Path, str]
) -> None:
    assert curl(http_server.url(PKG)).status == 401

    def fail_on_error(handle: pycurl.Curl) -> None:
        handle.setopt(pycurl.FAILONERROR, 1)

    with pytest.raises(pycurl.error) as excinfo:
        curl(http_server.url(PKG), userpwd="pkguser:nope", configure=fail_on_error)
    assert excinfo.value.args[0] == pycurl.E_HTTP_RETURNED_ERROR
    assert [r.status for r in http_server.requests] == [401, 401]


def test_auth_is_checked_before_faults(http_server: ContentServer, pkg: tuple[Path, str]) -> None:
    """Unauthenticated probes must not use up a ``times``-limited fault."""
    fault = http_server.faults[PKG] = Fault(kind="status", status=503, times=1)
    assert curl(http_server.url(PKG)).status == 401
    assert fault.hits == 0
    assert curl(http_server.url(PKG), userpwd="pkguser:pkg-secret").status == 503
    assert fault.hits == 1


# --------------------------------------------------------------------------------------------
# HEAD, Range, If-Range
# --------------------------------------------------------------------------------------------


def test_head(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    with session() as s:
        response = s.head(http_server_noauth.url(PKG), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.content == b""
    assert {"ETag", "Last-Modified", "Accept-Ranges"} <= set(response.headers)

    result = curl(http_server_noauth.url(PKG), nobody=True)
    assert result.status == 200
    assert result.body == b""
    assert result.headers["etag"] == response.headers["ETag"]


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=1048576-", MiB, SIZE - 1),
        ("bytes=0-99", 0, 99),
        ("bytes=100-199", 100, 199),
        ("bytes=-100", SIZE - 100, SIZE - 1),
        (f"bytes={SIZE - 10}-{SIZE * 2}", SIZE - 10, SIZE - 1),  # end clipped to the file
    ],
)
def test_range(
    http_server_noauth: ContentServer,
    pkg: tuple[Path, str],
    range_header: str,
    first: int,
    last: int,
) -> None:
    data = pkg[0].read_bytes()
    with session() as s:
        response = s.get(http_server_noauth.url(PKG), headers={"Range": range_header}, timeout=10)
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.content == data[first : last + 1]


@pytest.mark.parametrize("range_header", ["bytes=0-1,5-6", "bytes=9-3", "items=0-1", "bytes=-"])
def test_ignored_ranges_send_full_body(
    http_server_noauth: ContentServer, pkg: tuple[Path, str], range_header: str
) -> None:
    with session() as s:
        response = s.get(http_server_noauth.url(PKG), headers={"Range": range_header}, timeout=10)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == pkg[1]


@pytest.mark.parametrize("range_header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}"])
def test_unsatisfiable_range_is_416(
    http_server_noauth: ContentServer, pkg: tuple[Path, str], range_header: str
) -> None:
    with session() as s:
        response = s.get(http_server_noauth.url(PKG), headers={"Range": range_header}, timeout=10)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"


def test_if_range(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    url = http_server_noauth.url(PKG)
    with session() as s:
        head = s.head(url, timeout=10)
        etag, last_modified = head.headers["ETag"], head.headers["Last-Modified"]

        def get(if_range: str) -> requests.Response:
            return s.get(url, headers={"Range": "bytes=10-", "If-Range": if_range}, timeout=10)

        assert get(etag).status_code == 206
        assert get(last_modified).status_code == 206
        stale = get('"stale-etag"')
        assert stale.status_code == 200
        assert len(stale.content) == SIZE
        assert get("Thu, 01 Jan 1970 00:00:00 GMT").status_code == 200
        assert get("W/" + etag).status_code == 200  # weak validators never match If-Range


def test_pycurl_resume(http_server: ContentServer, pkg: tuple[Path, str]) -> None:
    data = pkg[0].read_bytes()
    result = curl(http_server.url(PKG), userpwd="pkguser:pkg-secret", resume_from=MiB)
    assert result.status == 206
    assert data[:MiB] + result.body == data
    assert http_server.requests[-1].header("Range") == f"bytes={MiB}-"


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def test_fault_status_404(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    http_server_noauth.faults[PKG] = Fault(kind="status", status=404)
    assert curl(http_server_noauth.url(PKG)).status == 404
    assert curl(http_server_noauth.url(PKG), nobody=True).status == 200  # GET only...
    http_server_noauth.faults[PKG] = Fault(kind="status", status=404, methods=("HEAD",))
    assert curl(http_server_noauth.url(PKG), nobody=True).status == 404  # ...unless asked


@pytest.mark.parametrize("status", [403, 500, 503])
def test_fault_status_with_retry_after(
    http_server_noauth: ContentServer, pkg: tuple[Path, str], status: int
) -> None:
    http_server_noauth.faults["/" + PKG] = Fault(kind="status", status=status, retry_after=7)
    with session() as s:
        response = s.get(http_server_noauth.url(PKG), timeout=10)
    assert response.status_code == status
    assert response.headers["Retry-After"] == "7"


def test_fault_truncate(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    http_server_noauth.faults[PKG] = Fault(kind="truncate", after_bytes=MiB + 5)
    sink = io.BytesIO()
    with pytest.raises(pycurl.error) as excinfo:
        curl(http_server_noauth.url(PKG), sink=sink)
    assert excinfo.value.args[0] == pycurl.E_PARTIAL_FILE  # 18
    assert sink.getvalue() == pkg[0].read_bytes()[: MiB + 5]

    with session() as s, pytest.raises(requests.exceptions.RequestException):
        requests_sha256(s, http_server_noauth.url(PKG))


def test_fault_truncate_zero_bytes(
    http_server_noauth: ContentServer, pkg: tuple[Path, str]
) -> None:
    http_server_noauth.faults[PKG] = Fault(kind="truncate", after_bytes=0)
    sink = io.BytesIO()
    with pytest.raises(pycurl.error) as excinfo:
        curl(http_server_noauth.url(PKG), sink=sink)
    assert excinfo.value.args[0] == pycurl.E_PARTIAL_FILE
    assert sink.getvalue() == b""


def test_fault_truncate_over_tls(
    https_server: ContentServer, pkg: tuple[Path, str], tls_ca_file: Path
) -> None:
    """Over TLS the cut comes without close_notify; curl may call it 18 or a recv error."""
    https_server.faults[PKG] = Fault(kind="truncate", after_bytes=1000)
    with pytest.raises(pycurl.error) as excinfo:
        curl(https_server.url(PKG), userpwd="pkguser:pkg-secret", cainfo=tls_ca_file)
    assert excinfo.value.args[0] in (pycurl.E_PARTIAL_FILE, pycurl.E_RECV_ERROR)


def test_fault_reset(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    http_server_noauth.faults[PKG] = Fault(kind="reset", after_bytes=64 * 1024)
    with pytest.raises(pycurl.error) as excinfo:
        curl(http_server_noauth.url(PKG))
    # An RST usually surfaces as "Connection reset by peer" (56); 18 if EOF raced it.
    assert excinfo.value.args[0] in (pycurl.E_RECV_ERROR, pycurl.E_PARTIAL_FILE)

    with session() as s, pytest.raises(requests.exceptions.RequestException):
        requests_sha256(s, http_server_noauth.url(PKG))
    assert http_server_noauth.errors == []


@pytest.mark.parametrize("status", [301, 302])
def test_fault_redirect(http_server: ContentServer, pkg: tuple[Path, str], status: int) -> None:
    http_server.faults["/old/pkg.tgz"] = Fault(
        kind="redirect", status=status, location=http_server.url(PKG)
    )
    result = curl(http_server.url("/old/pkg.tgz"), userpwd="pkguser:pkg-secret", follow=True)
    assert (result.status, result.redirects, result.sha256) == (200, 1, pkg[1])

    with session((HTTP_USERNAME, HTTP_PASSWORD)) as s:
        response, digest = requests_sha256(s, http_server.url("/old/pkg.tgz"))
    assert [r.status_code for r in response.history] == [status]
    assert response.history[0].headers["Location"] == http_server.url(PKG)
    assert digest == pkg[1]


def test_fault_redirect_not_followed(
    http_server_noauth: ContentServer, pkg: tuple[Path, str]
) -> None:
    http_server_noauth.faults["/moved"] = Fault(kind="redirect", location="/" + PKG)
    result = curl(http_server_noauth.url("/moved"))
    assert result.status == 302
    assert result.headers["location"] == "/" + PKG


def test_fault_ignore_range(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    http_server_noauth.faults[PKG] = Fault(kind="ignore_range")
    with session() as s:
        response = s.get(http_server_noauth.url(PKG), headers={"Range": "bytes=100-"}, timeout=10)
    assert response.status_code == 200
    assert "Accept-Ranges" not in response.headers
    assert "Content-Range" not in response.headers
    assert hashlib.sha256(response.content).hexdigest() == pkg[1]

    # libcurl refuses to treat a 200 as the continuation of a resumed download.
    with pytest.raises(pycurl.error) as excinfo:
        curl(http_server_noauth.url(PKG), resume_from=100)
    assert excinfo.value.args[0] == pycurl.E_RANGE_ERROR


def test_fault_times_limit(http_server_noauth: ContentServer, pkg: tuple[Path, str]) -> None:
    fault = Fault(kind="status", status=503, retry_after=1, times=2)
    http_server_noauth.faults[PKG] = fault
    statuses = [curl(http_server_noauth.url(PKG)).status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert fault.hits == 2
    assert fault.exhausted
    assert [r.status for r in http_server_noauth.requests_for(PKG)] == statuses


def test_truncate_once_then_resume(http_server: ContentServer, pkg: tuple[Path, str]) -> None:
    """The pattern resume tests rely on: first attempt cut short, the retry resumes."""
    fault = http_server.faults[PKG] = Fault(kind="truncate", after_bytes=MiB, times=1)
    # HEAD does not consume a body fault, so a downloader's probe leaves it armed.
    assert curl(http_server.url(PKG), userpwd="pkguser:pkg-secret", nobody=True).status == 200
    assert fault.hits == 0

    sink = io.BytesIO()
    with pytest.raises(pycurl.error) as excinfo:
        curl(http_server.url(PKG), userpwd="pkguser:pkg-secret", sink=sink)
    assert excinfo.value.args[0] == pycurl.E_PARTIAL_FILE
    received = sink.getvalue()
    assert len(received) == MiB

    rest = curl(http_server.url(PKG), userpwd="pkguser:pkg-secret", resume_from=len(received))
    assert rest.status == 206
    assert hashlib.sha256(received + rest.body).hexdigest() == pkg[1]


def test_fault_trickle_rate(http_server_noauth: ContentServer, content_dir: Path) -> None:
    _, digest = make_file(content_dir, "slow.bin", 4000)
    http_server_noauth.faults["slow.bin"] = Fault(kind="trickle", bytes_per_second=8000)
    started = time.monotonic()
    result = curl(http_server_noauth.url("slow.bin"))
    elapsed = time.monotonic() - started
    assert result.sha256 == digest
    assert 0.35 <= elapsed < 3  # 4000 B at 8000 B/s is ~0.5 s


@pytest.mark.timeout(10)
def test_fault_trickle_stall_and_prompt_shutdown(
    http_server_noauth: ContentServer, pkg: tuple[Path, str]
) -> None:
    http_server_noauth.faults[PKG] = Fault(kind="trickle", bytes_per_second=1000)

    def low_speed(handle: pycurl.Curl) -> None:
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 100_000)
        handle.setopt(pycurl.LOW_SPEED_TIME, 1)

    with pytest.raises(pycurl.error) as excinfo:
        curl(http_server_noauth.url(PKG), configure=low_speed)
    assert excinfo.value.args[0] == pycurl.E_OPERATION_TIMEDOUT

    # A second trickle still in flight while the server stops must not delay teardown.
    with session() as s:
        response = s.get(http_server_noauth.url(PKG), stream=True, timeout=10)
        started = time.monotonic()
        http_server_noauth.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(requests.exceptions.RequestException):
            response.content  # noqa: B018 - reading the (now cut) body is the point
    assert http_server_noauth.errors == []


@pytest.mark.timeout(10)
def test_stop_with_idle_keepalive_connection(
    http_server_noauth: ContentServer, pkg: tuple[Path, str]
) -> None:
    with session() as s:
        assert s.get(http_server_noauth.url(PKG), timeout=10).status_code == 200
        started = time.monotonic()
        http_server_noauth.stop()  # the session still holds its keep-alive connection
        assert time.monotonic() - started < 2
    http_server_noauth.stop()  # idempotent


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="location"):
        Fault(kind="redirect")


# --------------------------------------------------------------------------------------------
# FTP
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["ftpuser", None], ids=["user", "anonymous"])
def test_ftp_download_pycurl(
    ftp_server: FTPTestServer, pkg: tuple[Path, str], user: str | None
) -> None:
    url = ftp_server.url(PKG, user=user)
    if user is None:
        assert url == f"ftp://127.0.0.1:{ftp_server.port}/{PKG}"
    else:
        assert url == f"ftp://ftpuser:ftp-secret@127.0.0.1:{ftp_server.port}/{PKG}"
    result = curl(url)
    assert result.sha256 == pkg[1]


def test_ftp_download_userpwd_option(ftp_server: FTPTestServer, pkg: tuple[Path, str]) -> None:
    result = curl(ftp_server.url(PKG), userpwd=f"{ftp_server.username}:{ftp_server.password}")
    assert result.sha256 == pkg[1]


@pytest.mark.parametrize("user", ["ftpuser", None], ids=["user", "anonymous"])
def test_ftp_download_ftplib(
    ftp_server: FTPTestServer, pkg: tuple[Path, str], user: str | None
) -> None:
    digest = hashlib.sha256()
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_server.host, ftp_server.port, timeout=10)
        if user is None:
            ftp.login()
        else:
            ftp.login(ftp_server.username, ftp_server.password)
        ftp.voidcmd("TYPE I")  # SIZE is refused in ASCII mode
        assert ftp.size(PKG) == SIZE
        ftp.retrbinary(f"RETR {PKG}", digest.update, blocksize=MiB)
    assert digest.hexdigest() == pkg[1]


def test_ftp_resume(ftp_server: FTPTestServer, pkg: tuple[Path, str]) -> None:
    data = pkg[0].read_bytes()
    result = curl(ftp_server.url(PKG, user="ftpuser"), resume_from=MiB)
    assert data[:MiB] + result.body == data


def test_ftp_wrong_password(ftp_server: FTPTestServer, pkg: tuple[Path, str]) -> None:
    with pytest.raises(pycurl.error) as excinfo:
        curl(ftp_server.url(PKG, user="ftpuser", password="wrong"))
    assert excinfo.value.args[0] == pycurl.E_LOGIN_DENIED


def test_ftp_missing_file(ftp_server: FTPTestServer) -> None:
    with pytest.raises(pycurl.error) as excinfo:
        curl(ftp_server.url("missing.bin", user="ftpuser"))
    assert excinfo.value.args[0] == pycurl.E_REMOTE_FILE_NOT_FOUND


def test_ftp_is_read_only(ftp_server: FTPTestServer, pkg: tuple[Path, str]) -> None:
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_server.host, ftp_server.port, timeout=10)
        ftp.login(ftp_server.username, ftp_server.password)
        with pytest.raises(ftplib.error_perm):
            ftp.storbinary("STOR upload.bin", io.BytesIO(b"x"))
