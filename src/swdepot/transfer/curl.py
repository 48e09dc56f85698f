"""HTTP, HTTPS and FTP through libcurl (pycurl): one attempt of a transfer.

Chosen on measurements (``shared/reference/stack.md``): with a 1 MiB buffer pycurl
moves data at curl's own speed, resumes safely, and speaks every protocol we need
through one API. It blocks, so it runs on a job worker thread.

An attempt continues at ``sink.bytes_written``: HTTP asks for the rest with ``Range``
and ``If-Range`` carrying the first response's validator, FTP with ``REST``. The
answer is checked before its first byte is kept: a 206 must start exactly there and
describe the same file (ETag, Last-Modified, total size), else the attempt ends with
:class:`RestartNeeded` and the kept bytes are thrown away; a resumed transfer is never
a splice of two different files. Failures are sorted here into transient ones, which
the retry loop (``retry.py``) tries again, and permanent ones, which end the job.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycurl

from swdepot.errors import OntapError
from swdepot.transfer.control import (
    Cancelled,
    Control,
    Network,
    RestartNeeded,
    Transient,
    Validator,
    address_allowed,
    failed,
)
from swdepot.transfer.retry import DEADLINE_SLACK, parse_retry_after
from swdepot.transfer.sink import BlockGatherer
from swdepot.transfer.url import Credentials, DownloadUrl

BUFFER_SIZE = 1 << 20
_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS | pycurl.PROTO_FTP
_REDIRECT_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
_HTTP_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 407: "Proxy "
                 "Authentication Required", 408: "Request Timeout", 410: "Gone",
                 416: "Range Not Satisfiable", 429: "Too Many Requests",
                 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                 504: "Gateway Timeout"}
#: Statuses a later attempt may not meet (RFC 9110 and curl's ``--retry`` agree on these).
TRANSIENT_STATUS = frozenset((408, 429, 500, 502, 503, 504))
#: libcurl errors that say "the connection failed", not "the request is wrong".
_TRANSIENT_CURL = frozenset((pycurl.E_PARTIAL_FILE, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR,
                             pycurl.E_GOT_NOTHING, pycurl.E_COULDNT_CONNECT))
_CANNOT_RESUME = frozenset((pycurl.E_RANGE_ERROR, pycurl.E_BAD_DOWNLOAD_RESUME,
                            pycurl.E_FTP_COULDNT_USE_REST))


@dataclass(frozen=True)
class CurlOptions:
    """Engine-wide settings for libcurl transfers."""

    ca_bundle: Path | None
    allowed_networks: tuple[Network, ...] = ()
    connect_timeout: float = 30.0
    stall_timeout: float = 120.0
    stall_min_speed: int = 1
    max_redirects: int = 5


@dataclass
class ResumeState:
    """Carried across the attempts of one transfer (and, through the job's checkpoint,
    into a transfer that takes over from a process that died)."""

    validator: Validator | None = None
    identified: Callable[[Validator], None] | None = None  # told of each first response

    def identify(self, seen: Validator) -> None:
        self.validator = seen
        if self.identified is not None:
            self.identified(seen)


@dataclass(frozen=True)
class Probe:
    """What one ``HEAD`` told about the file, before any byte of it was asked for."""

    status: int | None
    validator: Validator
    ranges: bool | None  # Accept-Ranges: True "bytes", False "none", None unsaid


@dataclass
class _Exchange:
    """One attempt as it unfolds: the latest response head and what went wrong."""

    offset: int
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None
    blocked: str | None = None


class CurlFetcher:
    """Runs one attempt of a URL into a sink; one curl handle per attempt."""

    def __init__(self, options: CurlOptions) -> None:
        self._options = options

    def attempt(self, url: DownloadUrl, credentials: Credentials, sink: BlockGatherer,
                control: Control, resume: ResumeState, time_left: float) -> None:
        """Fetch the rest of the file; raise Transient, RestartNeeded or a permanent error."""
        http = url.scheme in ("http", "https")
        if sink.bytes_written and http and (resume.validator is None
                                            or resume.validator.if_range() is None):
            sink.rewind()  # nothing to prove the server still has the same file: start over
        exchange = _Exchange(offset=sink.bytes_written)
        handle = pycurl.Curl()
        try:
            self._configure(handle, url, credentials, sink, control, resume, exchange, time_left)
            started = time.monotonic()
            try:
                handle.perform()
            except pycurl.error as exc:
                raise self._explain(handle, exc, exchange,
                                    time_left - (time.monotonic() - started)) from None
        finally:
            handle.close()

    def probe(self, url: DownloadUrl, credentials: Credentials, control: Control,
              time_left: float) -> Probe | None:
        """One ``HEAD`` on a connection of its own; None if it got no answer (refused,
        blocked, timed out, cancelled). A HEAD never fails a download: a server that
        refuses HEAD still serves the GET, and the GET's own answer is what counts."""
        exchange = _Exchange(offset=0)
        handle = pycurl.Curl()
        try:
            self._common(handle, url, credentials, exchange, time_left)
            handle.setopt(pycurl.NOBODY, True)
            handle.setopt(pycurl.FAILONERROR, False)
            handle.setopt(pycurl.FORBID_REUSE, True)
            handle.setopt(pycurl.HEADERFUNCTION, _head_callback(exchange))
            handle.setopt(pycurl.NOPROGRESS, False)
            handle.setopt(pycurl.XFERINFOFUNCTION,
                          lambda *_: 1 if control.cancelled else 0)
            try:
                handle.perform()
            except pycurl.error:
                return None
        finally:
            handle.close()
        headers = exchange.headers
        accept = headers.get("accept-ranges", "").strip().lower()
        return Probe(exchange.status,
                     Validator(headers.get("etag"), headers.get("last-modified"),
                               _int(headers.get("content-length"))),
                     True if accept == "bytes" else False if accept == "none" else None)

    def _common(self, handle: pycurl.Curl, url: DownloadUrl, credentials: Credentials,
                exchange: _Exchange, time_left: float) -> None:
        """What every request of a transfer shares: the URL, redirects, timeouts, TLS,
        credentials and the outbound allow-list."""
        opts = self._options
        handle.setopt(pycurl.URL, url.url)
        handle.setopt(pycurl.PROTOCOLS, _PROTOCOLS)
        handle.setopt(pycurl.REDIR_PROTOCOLS, _REDIRECT_PROTOCOLS)
        handle.setopt(pycurl.FOLLOWLOCATION, True)
        handle.setopt(pycurl.MAXREDIRS, opts.max_redirects)
        handle.setopt(pycurl.FAILONERROR, True)
        handle.setopt(pycurl.BUFFERSIZE, BUFFER_SIZE)
        handle.setopt(pycurl.NOSIGNAL, True)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(opts.connect_timeout * 1000)))
        handle.setopt(pycurl.LOW_SPEED_LIMIT, max(1, opts.stall_min_speed))
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, round(opts.stall_timeout)))
        handle.setopt(pycurl.TIMEOUT_MS, max(1, int(time_left * 1000)))
        handle.setopt(pycurl.SSL_VERIFYPEER, True)
        handle.setopt(pycurl.SSL_VERIFYHOST, 2)
        if opts.ca_bundle is not None:
            handle.setopt(pycurl.CAINFO, str(opts.ca_bundle))
        handle.setopt(pycurl.SSLVERSION, pycurl.SSLVERSION_TLSv1_2)
        if credentials.username is not None or credentials.password is not None:
            # bytes: libcurl sends them as they are (UTF-8), where a str must be ASCII
            handle.setopt(pycurl.USERNAME, (credentials.username or "").encode())
            handle.setopt(pycurl.PASSWORD, (credentials.password or "").encode())
            handle.setopt(pycurl.HTTPAUTH, pycurl.HTTPAUTH_BASIC)
        if opts.allowed_networks:
            handle.setopt(pycurl.OPENSOCKETFUNCTION,
                          _opensocket_callback(opts.allowed_networks, exchange))

    def _configure(self, handle: pycurl.Curl, url: DownloadUrl, credentials: Credentials,
                   sink: BlockGatherer, control: Control, resume: ResumeState,
                   exchange: _Exchange, time_left: float) -> None:
        self._common(handle, url, credentials, exchange, time_left)
        if exchange.offset:
            handle.setopt(pycurl.RESUME_FROM_LARGE, exchange.offset)
            if url.scheme != "ftp" and resume.validator is not None:
                value = resume.validator.if_range()  # as the server sent it (ISO-8859-1)
                handle.setopt(pycurl.HTTPHEADER,
                              [f"If-Range: {value}".encode("iso-8859-1", "replace")])
        ftp = url.scheme == "ftp"
        if ftp:
            handle.setopt(pycurl.OPT_FILETIME, True)  # MDTM: FTP's Last-Modified
        handle.setopt(pycurl.NOPROGRESS, False)
        handle.setopt(pycurl.XFERINFOFUNCTION, _progress_callback(sink, control, exchange,
                                                                  resume))
        handle.setopt(pycurl.HEADERFUNCTION, _header_callback(sink, resume, exchange,
                                                              http=not ftp))
        handle.setopt(pycurl.WRITEFUNCTION, _write_callback(sink, exchange))

    def _explain(self, handle: pycurl.Curl, exc: pycurl.error, exchange: _Exchange,
                 time_left: float) -> OntapError:
        """Turn libcurl's error into a message a person can act on, transient or not."""
        if exchange.error is not None:
            error = exchange.error
            return error if isinstance(error, OntapError) else failed(str(error))
        args: tuple[Any, ...] = exc.args  # (libcurl code, its message)
        code, text = int(args[0]), str(args[1]).rstrip(".")
        if exchange.blocked is not None:
            return failed(f"the address {exchange.blocked} is not in the outbound allow-list")
        if code == pycurl.E_HTTP_RETURNED_ERROR:
            return _http_error(handle.getinfo(pycurl.RESPONSE_CODE), exchange)
        if code in _CANNOT_RESUME:
            return RestartNeeded("the server cannot continue the interrupted transfer")
        if code == pycurl.E_OPERATION_TIMEDOUT:
            if time_left <= DEADLINE_SLACK:
                return Transient("the time limit was reached")
            if handle.getinfo(pycurl.CONNECT_TIME) > 0:
                return failed(self._stalled())
            return Transient(_describe(code, text))
        if code == pycurl.E_COULDNT_CONNECT and \
                handle.getinfo(pycurl.OS_ERRNO) == errno.ECONNREFUSED:
            return Transient(f"connection refused ({text})")  # what users look for first
        if code in _TRANSIENT_CURL:
            return Transient(_describe(code, text))
        return failed(_describe(code, text))

    def _stalled(self) -> str:
        opts = self._options
        if opts.stall_min_speed <= 1:
            return f"the transfer stalled: no data arrived for {round(opts.stall_timeout)} seconds"
        return (f"the transfer stalled: less than {opts.stall_min_speed} bytes per second for "
                f"{round(opts.stall_timeout)} seconds")


def _http_error(status: int, exchange: _Exchange) -> OntapError:
    reason = _HTTP_REASONS.get(status, "error")
    hint = " (check the user name and password)" if status in (401, 403) else ""
    detail = f"the server answered HTTP {status} {reason}{hint}"
    if status in TRANSIENT_STATUS:
        return Transient(detail, parse_retry_after(exchange.headers.get("retry-after")))
    if status == 416 and exchange.offset:
        return RestartNeeded(detail)
    return failed(detail)


def _describe(code: int, text: str) -> str:
    known = {
        pycurl.E_COULDNT_RESOLVE_HOST: "could not resolve the server's host name",
        pycurl.E_COULDNT_CONNECT: "could not connect to the server",
        pycurl.E_PARTIAL_FILE: "the transfer ended before the whole file arrived",
        pycurl.E_OPERATION_TIMEDOUT: "the connection to the server timed out",
        pycurl.E_LOGIN_DENIED: "the FTP server rejected the login",
        pycurl.E_REMOTE_FILE_NOT_FOUND: "the file was not found on the server",
        pycurl.E_TOO_MANY_REDIRECTS: "too many redirects",
        pycurl.E_UNSUPPORTED_PROTOCOL: "a redirect pointed to a scheme that is not allowed",
        pycurl.E_PEER_FAILED_VERIFICATION: "the server's TLS certificate could not be verified",
        pycurl.E_SSL_CONNECT_ERROR: "the TLS handshake with the server failed",
        pycurl.E_SSL_CACERT_BADFILE: "the configured CA certificates could not be read",
        pycurl.E_RECV_ERROR: "the connection to the server was lost",
        pycurl.E_SEND_ERROR: "the connection to the server was lost",
        pycurl.E_GOT_NOTHING: "the server closed the connection without answering",
    }
    summary = known.get(code)
    return f"{summary} ({text})" if summary else text


def _header_callback(sink: BlockGatherer, resume: ResumeState, exchange: _Exchange, *,
                     http: bool) -> Any:
    """Parse each response head (HTTP) or reply (FTP); judge it before a byte is kept."""

    def header(raw: bytes) -> int | None:
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        try:
            if http:
                _http_header_line(line, sink, resume, exchange)
            else:
                _ftp_reply_line(line, sink, resume, exchange)
        except OntapError as exc:
            exchange.error = exc
            return 0  # stops the transfer before a byte of this body is kept
        return None

    return header


def _head_callback(exchange: _Exchange) -> Any:
    """Keep the last response head of a HEAD (after any redirects)."""

    def header(raw: bytes) -> None:
        _track_head(raw.decode("iso-8859-1").rstrip("\r\n"), exchange)

    return header


def _track_head(line: str, exchange: _Exchange) -> bool:
    """Follow a response head line by line (a status line starts a new head); True for
    its last, blank line."""
    if line.startswith("HTTP/"):
        parts = line.split(None, 2)
        exchange.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        exchange.headers = {}
    elif ":" in line:
        name, _, value = line.partition(":")
        exchange.headers[name.strip().lower()] = value.strip()
    return not line


def _ftp_reply_line(line: str, sink: BlockGatherer, resume: ResumeState,
                    exchange: _Exchange) -> None:
    """Collect the SIZE and MDTM replies; check them when the RETR data starts."""
    code, _, text = line.partition(" ")
    if code == "213":
        value = text.strip()
        # MDTM answers a 14-digit time stamp, SIZE a byte count (curl asks MDTM first)
        exchange.headers["mdtm" if len(value) >= 14 else "size"] = value
    elif code in ("125", "150"):
        _accept_ftp_transfer(sink, resume, exchange)


def _http_header_line(line: str, sink: BlockGatherer, resume: ResumeState,
                      exchange: _Exchange) -> None:
    """Track the latest response head; accept or refuse a 2xx at its blank line."""
    ended = _track_head(line, exchange)
    if ended and exchange.status is not None and 200 <= exchange.status < 300:
        _accept_http_response(sink, resume, exchange)


def _accept_http_response(sink: BlockGatherer, resume: ResumeState, exchange: _Exchange) -> None:
    """Keep the body only if it continues exactly the bytes already kept."""
    headers = exchange.headers
    length = _int(headers.get("content-length"))
    seen = Validator(headers.get("etag"), headers.get("last-modified"))
    if exchange.offset == 0:
        if exchange.status == 206:  # never asked for a range: do not trust this answer
            raise RestartNeeded("the server answered a partial response to a full request")
        seen.total = length
        resume.identify(seen)
        sink.check_expected_size(length)
        return
    if exchange.status != 206:
        raise RestartNeeded("the server does not support resuming or the file changed")
    first, total = _content_range(headers.get("content-range"))
    seen.total = total
    if first != exchange.offset:
        raise RestartNeeded("the server resumed at the wrong offset")
    if resume.validator is None or not resume.validator.same_file(seen):
        raise RestartNeeded("the file changed on the server during the transfer")
    sink.check_expected_size(total)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes first-last/total`` → (first, total); unknown parts are None."""
    if not value or not value.strip().lower().startswith("bytes "):
        return None, None
    span, _, total = value.strip()[6:].partition("/")
    first = _int(span.partition("-")[0])
    return first, _int(total)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _accept_ftp_transfer(sink: BlockGatherer, resume: ResumeState, exchange: _Exchange) -> None:
    """FTP's validators are the SIZE and MDTM replies: a resumed RETR must see the same."""
    seen = Validator(last_modified=exchange.headers.get("mdtm"),
                     total=_int(exchange.headers.get("size")))
    if exchange.offset == 0:
        resume.identify(seen)
    elif resume.validator is None or not resume.validator.same_file(seen):
        raise RestartNeeded("the file changed on the server during the transfer")
    sink.check_expected_size(seen.total)


def _write_callback(sink: BlockGatherer, exchange: _Exchange) -> Any:
    def write(chunk: bytes) -> int | None:
        try:
            sink.write(chunk)
        except Exception as exc:  # stop the transfer; the error is re-raised after perform()
            exchange.error = exc
            return 0
        return None

    return write


def _progress_callback(sink: BlockGatherer, control: Control, exchange: _Exchange,
                       resume: ResumeState) -> Any:
    def progress(_dltotal: int, _dlnow: int, _ultotal: int, _ulnow: int) -> int:
        if control.cancelled:
            exchange.error = Cancelled()
            return 1
        total = resume.validator.total if resume.validator is not None else None
        control.progress(sink.bytes_written, total)
        return 0

    return progress


def _opensocket_callback(allowed: tuple[Network, ...], exchange: _Exchange) -> Any:
    """Refuse connections to addresses outside the allow-list, after DNS resolution.

    Checking the resolved address (not the host name) is what stops DNS rebinding and
    redirects to internal hosts.
    """

    def opensocket(_purpose: int, address: Any) -> Any:
        ip = ipaddress.ip_address(address.addr[0])
        if not address_allowed(ip, allowed):
            exchange.blocked = str(ip)
            return pycurl.SOCKET_BAD
        return socket.socket(address.family, address.socktype, address.protocol)

    return opensocket
