"""Where transferred bytes go: every store copy, the sha256 and the package inspector.

One pass over the bytes does everything, so a package is never read back after its
transfer. The work is spread over the machine's cores as a pipeline: the transfer thread
receives and writes the primary copy; a copy thread writes the other copies and updates
the sha256; the inspector validates the archive on its own thread. ``write``, hashing and
inflating all release the GIL, so the three really run side by side. Queues between them
are bounded (a few 1 MiB chunks), which keeps memory flat whatever the package size.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from swdepot.errors import DOWNLOAD_FAILED, OntapError
from swdepot.repository.store import Upload

QUEUE_DEPTH = 8
_DONE = b""


class Inspector(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def failed(self) -> OntapError | None: ...


class TooLarge(OntapError):
    """The package exceeds the configured maximum size."""

    def __init__(self, limit: int) -> None:
        super().__init__(DOWNLOAD_FAILED, "Package download failed: the package is larger than "
                         f"the configured maximum of {limit} bytes.")


class _CopyThread:
    """Writes chunks to the secondary uploads and hashes them, off the transfer thread."""

    def __init__(self, uploads: Sequence[Upload]) -> None:
        self._uploads = uploads
        self._queue: queue.Queue[bytes] = queue.Queue(QUEUE_DEPTH)
        self.digest = hashlib.sha256()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swdepot-copy", daemon=True)
        self._thread.start()

    def put(self, chunk: bytes) -> None:
        """Hand a chunk over, waiting while the queue is full (back-pressure)."""
        while not self._stop.is_set():
            try:
                self._queue.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while (chunk := self._queue.get()) is not _DONE:
                for upload in self._uploads:
                    upload.write(chunk)
                self.digest.update(chunk)
        except BaseException as exc:  # reported to the transfer thread by the sink
            self.error = exc
            self._stop.set()

    def finish(self) -> None:
        """Wait until every queued chunk is written; re-raise a write failure."""
        self.put(_DONE)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop without waiting for queued chunks (the uploads are being thrown away)."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_DONE)
        self._thread.join(timeout=5)


class PackageSink:
    """A write target for protocol clients; raises to stop a transfer early.

    Call :meth:`finish` after the last chunk (before publishing) and :meth:`abort` when
    the transfer fails, so the copy thread always ends.
    """

    def __init__(self, uploads: Sequence[Upload], inspector: Inspector, max_bytes: int) -> None:
        if not uploads:
            raise ValueError("a sink needs at least one upload")
        self._primary = uploads[0]
        self._copies = _CopyThread(uploads[1:])
        self._inspector = inspector
        self._max_bytes = max_bytes
        self.bytes_written = 0

    def write(self, chunk: bytes) -> None:
        self.bytes_written += len(chunk)
        if self.bytes_written > self._max_bytes:
            raise TooLarge(self._max_bytes)
        failure = self._inspector.failed() or self._copies.error
        if failure is not None:
            raise failure
        self._copies.put(chunk)
        self._primary.write(chunk)
        self._inspector.feed(chunk)

    def check_expected_size(self, expected: int | None) -> None:
        """Refuse early when the server announces a size above the limit."""
        if expected is not None and expected > self._max_bytes:
            raise TooLarge(self._max_bytes)

    def finish(self) -> None:
        """All bytes are in every copy and hashed; raises if a copy failed."""
        self._copies.finish()

    def abort(self) -> None:
        self._copies.abort()

    @property
    def sha256(self) -> str:
        return self._copies.digest.hexdigest()
