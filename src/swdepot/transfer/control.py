"""What a running transfer may ask of its caller, and the outbound allow-list rule."""

from __future__ import annotations

import ipaddress
import json
import mmap
import socket
import struct
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from swdepot.errors import DOWNLOAD_FAILED, DOWNLOAD_TIME_LIMIT, OntapError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class Validator:
    """What identifies the file the kept bytes came from (from the first full response):
    HTTP's ETag, Last-Modified and length; FTP's MDTM (as ``last_modified``) and SIZE."""

    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None

    def if_range(self) -> str | None:
        """The ``If-Range`` value: a strong ETag, else Last-Modified; None if neither."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def same_file(self, other: Validator) -> bool:
        """False when any validator both responses carry differs."""
        pairs = ((self.etag, other.etag), (self.last_modified, other.last_modified),
                 (self.total, other.total))
        return all(a == b for a, b in pairs if a is not None and b is not None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Validator | None:
        """The validator a checkpoint holds; None for anything that is not one."""
        if not isinstance(value, dict):
            return None
        etag, modified, total = value.get("etag"), value.get("last_modified"), value.get("total")
        return cls(etag if isinstance(etag, str) else None,
                   modified if isinstance(modified, str) else None,
                   total if isinstance(total, int) else None)


class Control(Protocol):
    """Implemented by the job layer; keeps the transfer code free of jobs."""

    @property
    def cancelled(self) -> bool: ...

    def progress(self, done: int, total: int | None) -> None: ...

    def source_identified(self, validator: Validator) -> None:
        """The first response named the file the bytes come from: whoever continues the
        transfer later (after this process died) must find the same file."""

    def retrying(self, note: str | None) -> None:
        """A transient failure is being waited out: ``note`` says which and what comes
        next (``retrying: connection refused (attempt 2 of 6)``); None once the next
        attempt starts."""


class ControlPage:
    """A Control shared by a parent and the child it forked, in shared memory.

    The child's work asks it as any Control (has the parent stopped it? how far has it
    got?); the parent sets the stop flag and reads the progress, without a message for
    either. Layout at ``offset``: the stop flag (one byte, 8 reserved), then bytes done
    and bytes total (-1 while unknown) as two 64-bit integers.
    """

    SIZE = 24
    _PROGRESS = struct.Struct("<qq")

    def __init__(self, memory: mmap.mmap, offset: int = 0) -> None:
        self._memory = memory
        self._stop_at = offset
        self._progress_at = offset + 8
        self._PROGRESS.pack_into(memory, self._progress_at, 0, -1)

    @property
    def cancelled(self) -> bool:
        return self._memory[self._stop_at] != 0

    def progress(self, done: int, total: int | None) -> None:
        self._PROGRESS.pack_into(self._memory, self._progress_at, done,
                                 -1 if total is None else total)

    def reset(self) -> None:
        """Ready for the next task of a long-lived worker: not stopped, no progress."""
        self._memory[self._stop_at] = 0
        self._PROGRESS.pack_into(self._memory, self._progress_at, 0, -1)

    def stop(self) -> None:
        """Ask the child to end early (cancel, or the parent already knows it failed)."""
        self._memory[self._stop_at] = 1

    def read_progress(self) -> tuple[int, int | None]:
        done, total = self._PROGRESS.unpack_from(self._memory, self._progress_at)
        return done, None if total < 0 else total


class Cancelled(OntapError):
    """The transfer was stopped on request."""

    def __init__(self) -> None:
        super().__init__(DOWNLOAD_FAILED, "Package download failed: the download was canceled.")


IDENTIFIED = b"V"  # a forked helper's message: JSON of the Validator just seen
RETRYING = b"W"  # a forked helper's message: the retry note (UTF-8; empty: none)


class ForwardingControl:
    """A forked helper's Control: cancel and progress through its shared page, the
    source's validator as an ``IDENTIFIED`` message to the parent."""

    def __init__(self, page: ControlPage, sock: socket.socket) -> None:
        self._page = page
        self._sock = sock

    @property
    def cancelled(self) -> bool:
        return self._page.cancelled

    def progress(self, done: int, total: int | None) -> None:
        self._page.progress(done, total)

    def source_identified(self, validator: Validator) -> None:
        self._sock.send(IDENTIFIED + json.dumps(validator.to_json()).encode())

    def retrying(self, note: str | None) -> None:
        self._sock.send(RETRYING + (note or "").encode()[:1024])


def retry_note(body: bytes) -> str | None:
    """A ``RETRYING`` message's note."""
    return body.decode(errors="replace") or None


def ending(exc: OntapError) -> dict[str, Any]:
    """The error that ended a child process's work, as it tells its parent (JSON)."""
    if isinstance(exc, Cancelled):
        return {"cancelled": True}
    return {"code": exc.code, "message": exc.message}


def raise_ending(result: dict[str, Any]) -> None:
    """In the parent: raise what the child reported with :func:`ending`, if anything."""
    if result.get("cancelled"):
        raise Cancelled()
    if "code" in result:
        raise OntapError(int(result["code"]), str(result["message"]))


def address_allowed(ip: Address, allowed: tuple[Network, ...]) -> bool:
    """An empty allow-list allows everything; otherwise the address must be inside one.

    IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry.
    """
    if not allowed:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in allowed if net.version == ip.version)


def failed(detail: str) -> OntapError:
    """A transfer failure as ONTAP reports it: code 10551381 and what went wrong."""
    return OntapError(DOWNLOAD_FAILED, f"Package download failed: {detail}.")


class ProcessLost(OntapError):
    """A helper process ended without telling how (killed, crashed); ``what`` names it
    in the job's message."""

    what = "helper process"

    def __init__(self) -> None:
        failure = failed(f"the {self.what} ended unexpectedly")
        super().__init__(failure.code, failure.message)


class Transient(OntapError):
    """A failure that another attempt may not meet (reset, truncation, 5xx, connect timeout).

    The retry loop resumes after it; ``retry_after`` is the server's own wish, in seconds.
    """

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(DOWNLOAD_FAILED, f"Package download failed: {detail}.")
        self.detail = detail
        self.retry_after = retry_after

    def give_up(self, attempts: int) -> OntapError:
        """The job's final error once the retries are spent."""
        return failed(f"{self.detail} (gave up after {attempts} attempts)")


class RestartNeeded(Transient):
    """The bytes already kept cannot be continued: the next attempt starts from zero.

    Raised when a server ignores the range, or the file changed since the first response.
    """


def time_limit_exceeded(limit: float) -> OntapError:
    """ONTAP's 10551383: the download, retries included, took longer than allowed."""
    return OntapError(DOWNLOAD_TIME_LIMIT, "Package download failed: the operation took longer "
                      f"than the maximum time limit of {int(limit)} seconds.")
