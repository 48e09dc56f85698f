"""A small synchronous REST client for swdepot (and ONTAP's package endpoints).

httpx is made for small control calls like these; payloads only ever travel from
this client on ``upload``, which streams the file from disk. Every ONTAP error
envelope becomes an :class:`ApiError` with the code and message the service sent.
"""

from __future__ import annotations

import io
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from swdepot.client.connection import ConfigError, Connection

PACKAGES = "/api/cluster/software/packages"
DOWNLOAD = "/api/cluster/software/download"
UPLOAD = "/api/cluster/software/upload"
JOBS = "/api/cluster/jobs"


class ApiError(Exception):
    """The service answered with an ONTAP error (or something that is not one)."""

    def __init__(self, status: int, code: int, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "code": str(self.code)}
        if self.target:
            error["target"] = self.target
        return {"error": error}


class TransportError(Exception):
    """The service could not be reached (refused, TLS verification, timeout)."""


def tls_verify(conn: Connection) -> ssl.SSLContext | bool:
    """Verification is on unless ``--insecure``; ``--ca-file`` adds a trust anchor."""
    if conn.insecure:
        return False
    context = ssl.create_default_context()
    if conn.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(conn.ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"cannot use CA file {conn.ca_file}: {exc}") from None
    return context


class ProgressReader(io.RawIOBase):
    """A read-only file that reports how many bytes have been read from it.

    httpx streams a multipart file part by reading it in chunks, so counting reads is
    counting bytes handed to the connection, without holding the file in memory.
    """

    def __init__(self, fh: BinaryIO, on_read: Callable[[int], None]) -> None:
        super().__init__()
        self._fh = fh
        self._on_read = on_read
        self.name = getattr(fh, "name", "file")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fh.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if data:
            self._on_read(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class SwdepotClient:
    """One session against one service; use as a context manager."""

    def __init__(self, conn: Connection, *, timeout: float = 30.0,
                 upload_timeout: float = 3600.0) -> None:
        self.conn = conn
        self._upload_timeout = upload_timeout
        self._http = httpx.Client(
            base_url=conn.url, auth=(conn.user, conn.password), verify=tls_verify(conn),
            timeout=timeout, trust_env=False,
            headers={"accept": "application/hal+json", "user-agent": "swdepot-cli"},
        )

    def __enter__(self) -> SwdepotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport --------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send one request; the decoded JSON body, or :class:`ApiError`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(_reason(exc, self.conn.url)) from None
        return _decode(response)

    # --- resources --------------------------------------------------------------------

    def download_status(self) -> dict[str, Any]:
        return self.request("GET", DOWNLOAD)

    def start_download(self, url: str, username: str | None = None,
                       password: str | None = None) -> str:
        """POST the download (ONTAP validates synchronously); returns the job uuid."""
        body: dict[str, Any] = {"url": url}
        if username is not None:
            body["username"] = username
        if password is not None:
            body["password"] = password
        return _job_uuid(self.request("POST", DOWNLOAD, json=body))

    def packages(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.request("GET", PACKAGES,
                                                     params={"fields": "*"})["records"]
        return records

    def package_by_file_name(self, file_name: str) -> dict[str, Any] | None:
        records = self.request("GET", PACKAGES,
                               params={"fields": "*", "file_name": file_name})["records"]
        return records[0] if records else None

    def delete_package(self, version: str) -> str:
        return _job_uuid(self.request("DELETE", f"{PACKAGES}/{_segment(version)}"))

    def upload(self, path: Path, on_progress: Callable[[int], None]) -> str:
        """Stream ``path`` as ONTAP's multipart ``file`` part; returns the job uuid."""
        sent = 0

        def count(n: int) -> None:
            nonlocal sent
            sent += n
            on_progress(sent)

        with path.open("rb") as fh:
            reader = ProgressReader(fh, count)
            files = {"file": (path.name, reader, "application/octet-stream")}
            return _job_uuid(self.request("POST", UPLOAD, files=files,
                                          timeout=self._upload_timeout))

    def job(self, uuid: str) -> dict[str, Any]:
        return self.request("GET", f"{JOBS}/{_segment(uuid)}", params={"fields": "*"})

    def jobs(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.request("GET", JOBS,
                                                     params={"fields": "*"})["records"]
        return records


def _segment(value: str) -> str:
    """A path segment, percent-encoded so a version like ``9.1/x`` cannot change the path."""
    from urllib.parse import quote

    return quote(value, safe="")


def _job_uuid(body: dict[str, Any]) -> str:
    try:
        return str(body["job"]["uuid"])
    except (KeyError, TypeError):
        raise ApiError(0, 0, f"the service answered without a job link: {body!r}") from None


def _decode(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and isinstance(body, dict):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        try:
            code = int(error.get("code", 0))
        except (TypeError, ValueError):
            code = 0
        raise ApiError(response.status_code, code, str(error.get("message", "")),
                       error.get("target"))
    text = response.text[:200].strip() or response.reason_phrase
    raise ApiError(response.status_code, 0, f"HTTP {response.status_code}: {text}")


def _reason(exc: httpx.TransportError, url: str) -> str:
    """A one-line reason, naming TLS verification when that is what failed."""
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"cannot verify the TLS certificate of {url} ({text}); pass --ca-file with "
                "the service's certificate (data/tls/server.crt) or CA")
    return f"cannot reach {url}: {text}"
