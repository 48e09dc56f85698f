"""File-like adapters between the transfer thread and the inspection thread.

The transfer thread pushes chunks into a :class:`ChunkChannel`; the inspection thread reads
them back as a file through gzip and tarfile. :class:`UnpackedStream` sits between gzip and
tarfile and is the one place that sees every decompressed byte, so it enforces the size and
ratio limits and remembers the archive's tail for the end-of-archive check.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Protocol

from swdepot.packages.model import PackageInvalid, ValidationPolicy

QUEUE_DEPTH = 4  # 1 MiB blocks: enough to ride out jitter, little enough to keep RSS flat
POLL_SECONDS = 0.05
# tarfile reads ahead at most one record (10 KiB) beyond the header that ended the archive;
# keeping four times that is plenty to re-read everything after the end-of-archive marker.
TAIL_KEEP_BYTES = 64 * 1024


class Cancelled(Exception):
    """The inspection was aborted; unwinds the inspection thread without a verdict."""


class Readable(Protocol):
    """The part of a binary file the adapters need."""

    def read(self, size: int = -1, /) -> bytes: ...


class ChunkChannel:
    """A bounded hand-over of chunks, readable as a file on the consumer side.

    The bound (a few chunks) is the back-pressure: a fast download cannot run arbitrarily far
    ahead of validation. Producer calls take a ``stop`` event so they never block once the
    consumer has stopped reading; consumer calls poll ``cancelled`` so abort() is prompt.
    """

    def __init__(self, depth: int = QUEUE_DEPTH) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._cancelled = threading.Event()
        self._buffer = b""
        self._position = 0
        self._eof = False
        self.consumed = 0  # bytes handed to the reader so far (compressed size for ratios)

    # --- producer side ------------------------------------------------------------------

    def put(self, chunk: bytes, stop: threading.Event) -> None:
        """Queue a chunk, waiting for room unless the consumer has stopped."""
        self._offer(chunk, stop)

    def close(self, stop: threading.Event) -> None:
        """Signal end of data; the reader then returns b""."""
        self._offer(None, stop)

    def cancel(self) -> None:
        """Make the consumer raise Cancelled at its next read (or within one poll interval)."""
        self._cancelled.set()

    def discard(self) -> None:
        """Drop queued chunks so a finished consumer does not pin them in memory."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _offer(self, item: bytes | None, stop: threading.Event) -> None:
        """Blocking put that gives up as soon as ``stop`` is set."""
        while not stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            return

    # --- consumer side ------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called."""
        return self._cancelled.is_set()

    def read(self, size: int = -1, /) -> bytes:
        """``size`` bytes (all remaining if negative), fewer only at end of data.

        Short reads are not allowed: gzip reads its header fields with single read() calls
        and would misparse a header split across chunks.
        """
        if size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        piece = self._read_some(size)
        if len(piece) == size or not piece:
            return piece
        pieces = [piece]
        wanted = size - len(piece)
        while wanted and (piece := self._read_some(wanted)):
            pieces.append(piece)
            wanted -= len(piece)
        return b"".join(pieces)

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        """Fill ``buffer`` (zlib-ng's gzip reader reads compressed data this way)."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _read_some(self, size: int) -> bytes:
        """Up to ``size`` bytes from the current chunk, the whole chunk without copying."""
        if size == 0 or not self._fill():
            return b""
        start = self._position
        end = min(len(self._buffer), start + size)
        self._position = end
        self.consumed += end - start
        if start == 0 and end == len(self._buffer):
            return self._buffer
        return self._buffer[start:end]

    def _fill(self) -> bool:
        """Make unread bytes available; False at end of data."""
        while self._position >= len(self._buffer):
            if self._eof:
                return False
            item = self._take()
            if item is None:
                self._eof = True
                self._buffer, self._position = b"", 0
                return False
            self._buffer, self._position = item, 0
        return True

    def _take(self) -> bytes | None:
        """The next queued item, polling so a cancel is noticed while the queue is empty."""
        while True:
            if self._cancelled.is_set():
                raise Cancelled
            try:
                return self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue


class UnpackedStream:
    """Counts decompressed bytes, enforces the unpack limits and keeps the recent tail."""

    def __init__(
        self, source: Readable, compressed: ChunkChannel, policy: ValidationPolicy
    ) -> None:
        self._source = source
        self._compressed = compressed
        self._policy = policy
        self.total = 0
        self._tail: deque[tuple[int, bytes]] = deque()
        self._tail_bytes = 0

    def read(self, size: int = -1, /) -> bytes:
        """Read decompressed bytes, failing the package as soon as a limit is crossed."""
        if self._compressed.cancelled:
            raise Cancelled
        data = self._source.read(size)
        if data:
            self._remember(data)
            self.total += len(data)
            self._check_limits()
        return data

    def all_zero_from(self, offset: int) -> bool:
        """Whether every byte read so far from ``offset`` on is zero (tar end padding)."""
        if self._tail and offset < self._tail[0][0]:
            raise RuntimeError("end-of-archive offset is older than the retained tail")
        for start, chunk in self._tail:
            if start + len(chunk) > offset:
                segment = chunk[max(0, offset - start) :]
                if segment.count(0) != len(segment):
                    return False
        return True

    def _remember(self, data: bytes) -> None:
        """Keep references to the last few reads (no copies) for all_zero_from()."""
        self._tail.append((self.total, data))
        self._tail_bytes += len(data)
        while self._tail_bytes - len(self._tail[0][1]) >= TAIL_KEEP_BYTES:
            self._tail_bytes -= len(self._tail.popleft()[1])

    def _check_limits(self) -> None:
        """Size cap always; ratio only once enough has been unpacked for it to mean a bomb."""
        policy = self._policy
        if self.total > policy.max_unpacked_bytes:
            raise PackageInvalid.because(
                f"the package is too large when unpacked (more than {policy.max_unpacked_bytes}"
                " bytes)"
            )
        if self.total >= policy.ratio_check_after_bytes:
            packed = max(self._compressed.consumed, 1)
            if self.total / packed > policy.max_ratio:
                raise PackageInvalid.because(
                    f"the package is too large when unpacked (compression ratio above"
                    f" {policy.max_ratio:g})"
                )
