"""HTTP, HTTPS and FTP through libcurl (pycurl).

Chosen on measurements (``shared/reference/stack.md``): with a 1 MiB buffer pycurl
moves data at curl's own speed, resumes safely, and speaks every protocol we need
through one API. It blocks, so it runs on a job worker thread.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycurl

from swdepot.errors import DOWNLOAD_TIME_LIMIT, OntapError
from swdepot.transfer.control import Cancelled, Control, Network, address_allowed, failed
from swdepot.transfer.sink import PackageSink
from swdepot.transfer.url import Credentials, DownloadUrl

BUFFER_SIZE = 1 << 20
_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS | pycurl.PROTO_FTP
_REDIRECT_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
_HTTP_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 407: "Proxy "
                 "Authentication Required", 410: "Gone", 500: "Internal Server Error",
                 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass(frozen=True)
class CurlOptions:
    """Engine-wide settings for libcurl transfers."""

    ca_bundle: Path | None
    allowed_networks: tuple[Network, ...] = ()
    connect_timeout: float = 30.0
    stall_timeout: float = 120.0
    max_duration: float = 3600.0
    max_redirects: int = 5


class CurlFetcher:
    """Fetches one URL into a sink; one curl handle per transfer."""

    def __init__(self, options: CurlOptions) -> None:
        self._options = options

    def fetch(self, url: DownloadUrl, credentials: Credentials, sink: PackageSink,
              control: Control) -> None:
        handle = pycurl.Curl()
        state: dict[str, Any] = {"error": None, "blocked": None}
        try:
            self._configure(handle, url, credentials, sink, control, state)
            started = time.monotonic()
            try:
                handle.perform()
            except pycurl.error as exc:
                raise self._explain(handle, exc, state, time.monotonic() - started) from None
        finally:
            handle.close()

    def _configure(self, handle: pycurl.Curl, url: DownloadUrl, credentials: Credentials,
                   sink: PackageSink, control: Control, state: dict[str, Any]) -> None:
        opts = self._options
        handle.setopt(pycurl.URL, url.url)
        handle.setopt(pycurl.PROTOCOLS, _PROTOCOLS)
        handle.setopt(pycurl.REDIR_PROTOCOLS, _REDIRECT_PROTOCOLS)
        handle.setopt(pycurl.FOLLOWLOCATION, True)
        handle.setopt(pycurl.MAXREDIRS, opts.max_redirects)
        handle.setopt(pycurl.FAILONERROR, True)
        handle.setopt(pycurl.BUFFERSIZE, BUFFER_SIZE)
        handle.setopt(pycurl.NOSIGNAL, True)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(opts.connect_timeout * 1000))
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, int(opts.stall_timeout)))
        handle.setopt(pycurl.TIMEOUT_MS, int(opts.max_duration * 1000))
        handle.setopt(pycurl.SSL_VERIFYPEER, True)
        handle.setopt(pycurl.SSL_VERIFYHOST, 2)
        if opts.ca_bundle is not None:
            handle.setopt(pycurl.CAINFO, str(opts.ca_bundle))
        handle.setopt(pycurl.SSLVERSION, pycurl.SSLVERSION_TLSv1_2)
        if credentials.username is not None or credentials.password is not None:
            handle.setopt(pycurl.USERNAME, credentials.username or "")
            handle.setopt(pycurl.PASSWORD, credentials.password or "")
            handle.setopt(pycurl.HTTPAUTH, pycurl.HTTPAUTH_BASIC)
        handle.setopt(pycurl.NOPROGRESS, False)
        handle.setopt(pycurl.XFERINFOFUNCTION, _progress_callback(sink, control, state))
        handle.setopt(pycurl.WRITEFUNCTION, _write_callback(sink, state))
        if opts.allowed_networks:
            handle.setopt(pycurl.OPENSOCKETFUNCTION,
                          _opensocket_callback(opts.allowed_networks, state))

    def _explain(self, handle: pycurl.Curl, exc: pycurl.error, state: dict[str, Any],
                 elapsed: float) -> OntapError:
        """Turn libcurl's error into a message a person can act on."""
        if state["error"] is not None:
            error = state["error"]
            return error if isinstance(error, OntapError) else failed(str(error))
        code, text = exc.args[0], str(exc.args[1]).rstrip(".")
        if state["blocked"] is not None:
            return failed(f"the address {state['blocked']} is not in the outbound allow-list")
        if code == pycurl.E_HTTP_RETURNED_ERROR:
            status = handle.getinfo(pycurl.RESPONSE_CODE)
            reason = _HTTP_REASONS.get(status, "error")
            hint = " (check the user name and password)" if status in (401, 403) else ""
            return failed(f"the server answered HTTP {status} {reason}{hint}")
        if code == pycurl.E_OPERATION_TIMEDOUT and elapsed >= self._options.max_duration - 1:
            return OntapError(DOWNLOAD_TIME_LIMIT, "Package download failed: the operation took "
                              "longer than the maximum time limit of "
                              f"{int(self._options.max_duration)} seconds.")
        return failed(_describe(code, text))


def _describe(code: int, text: str) -> str:
    known = {
        pycurl.E_COULDNT_RESOLVE_HOST: "could not resolve the server's host name",
        pycurl.E_COULDNT_CONNECT: "could not connect to the server",
        pycurl.E_PARTIAL_FILE: "the transfer ended before the whole file arrived",
        pycurl.E_OPERATION_TIMEDOUT: "the transfer stalled or timed out",
        pycurl.E_LOGIN_DENIED: "the FTP server rejected the login",
        pycurl.E_REMOTE_FILE_NOT_FOUND: "the file was not found on the server",
        pycurl.E_TOO_MANY_REDIRECTS: "too many redirects",
        pycurl.E_UNSUPPORTED_PROTOCOL: "a redirect pointed to a scheme that is not allowed",
        pycurl.E_PEER_FAILED_VERIFICATION: "the server's TLS certificate could not be verified",
        pycurl.E_SSL_CONNECT_ERROR: "the TLS handshake with the server failed",
        pycurl.E_SSL_CACERT_BADFILE: "the configured CA certificates could not be read",
        pycurl.E_RECV_ERROR: "the connection to the server was lost",
        pycurl.E_GOT_NOTHING: "the server closed the connection without answering",
    }
    summary = known.get(code)
    return f"{summary} ({text})" if summary else text


def _write_callback(sink: PackageSink, state: dict[str, Any]) -> Any:
    def write(chunk: bytes) -> int | None:
        try:
            sink.write(chunk)
        except Exception as exc:  # stop the transfer; the error is re-raised after perform()
            state["error"] = exc
            return 0
        return None

    return write


def _progress_callback(sink: PackageSink, control: Control, state: dict[str, Any]) -> Any:
    def progress(dltotal: int, dlnow: int, _ultotal: int, _ulnow: int) -> int:
        if control.cancelled:
            state["error"] = Cancelled()
            return 1
        try:
            sink.check_expected_size(dltotal or None)
        except OntapError as exc:
            state["error"] = exc
            return 1
        control.progress(dlnow, dltotal or None)
        return 0

    return progress


def _opensocket_callback(allowed: tuple[Network, ...], state: dict[str, Any]) -> Any:
    """Refuse connections to addresses outside the allow-list, after DNS resolution.

    Checking the resolved address (not the host name) is what stops DNS rebinding and
    redirects to internal hosts.
    """

    def opensocket(_purpose: int, address: Any) -> Any:
        ip = ipaddress.ip_address(address.addr[0])
        if not address_allowed(ip, allowed):
            state["blocked"] = str(ip)
            return pycurl.SOCKET_BAD
        return socket.socket(address.family, address.socktype, address.protocol)

    return opensocket
