"""File-like adapters between the transfer thread and the inspection thread.

The transfer thread pushes chunks into a :class:`ChunkChannel`; the inspection thread reads
them back as a file through gzip and tarfile. :class:`UnpackedStream` sits between gzip and
tarfile and is the one place that sees every decompressed byte, so it enforces the size and
ratio limits and remembers the archive's tail for the end-of-archive check.
"""

from __future__ import annotations

import gzip
import io
import queue
import tarfile
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from zlib_ng import zlib_ng

from swdepot.packages.model import PackageInvalid, ValidationPolicy

QUEUE_DEPTH = 2  # 1 MiB blocks: enough to ride out jitter, little enough to keep RSS flat
POLL_SECONDS = 0.05
# tarfile reads ahead at most one record (10 KiB) beyond the header that ended the archive;
# keeping four times that is plenty to re-read everything after the end-of-archive marker.
TAIL_KEEP_BYTES = 64 * 1024


Chunk = bytes | memoryview


class StreamAborted(Exception):
    """The channel was aborted (the job was cancelled or its producer failed): the
    consumer's next read raises this, and it unwinds without a verdict."""


class Readable(Protocol):
    """The part of a binary file the adapters need."""

    def read(self, size: int = -1, /) -> bytes: ...


class Skimmable(Readable, Protocol):
    """A readable that can also hand over what it holds without copying, for skipping."""

    def read1(self, size: int, /) -> Chunk: ...


#: Unpacked data is produced and skipped in pieces below glibc's initial mmap threshold
#: (128 KiB): MiB-sized pieces made malloc raise the threshold and keep up to 9 MB more in
#: its arenas during a download (peak RSS 80 MB instead of 72 here), and fixing the
#: threshold instead (mallopt) made every piece an mmap/munmap pair, 2x slower.
UNPACK_PIECE = 96 * 1024

Release = Callable[[], None]


def read_full(read_some: Callable[[int], Chunk], size: int) -> Chunk:
    """``size`` bytes from ``read_some`` calls, fewer only at the end of the data."""
    piece = read_some(size)
    if len(piece) == size or not piece:
        return piece
    pieces = [piece]
    wanted = size - len(piece)
    while wanted and (piece := read_some(wanted)):
        pieces.append(piece)
        wanted -= len(piece)
    return b"".join(pieces)


class ChunkChannel:
    """A bounded hand-over of chunks, readable as a file on the consumer side.

    The bound (a few chunks) is the back-pressure: a fast download cannot run arbitrarily far
    ahead of validation. Producer calls take a ``stop`` event so they never block once the
    consumer has stopped reading; consumer calls poll ``cancelled`` so abort() is prompt.
    """

    def __init__(self, depth: int = QUEUE_DEPTH) -> None:
        self._queue: queue.Queue[tuple[Chunk, Release | None] | None] = queue.Queue(depth)
        self._cancelled = threading.Event()
        self._buffer: Chunk = b""
        self._release: Release | None = None  # gives the current chunk's memory back
        self._position = 0
        self._eof = False
        self.consumed = 0  # bytes handed to the reader so far (compressed size for ratios)

    # --- producer side ------------------------------------------------------------------

    def put(self, chunk: Chunk, stop: threading.Event, release: Release | None = None) -> None:
        """Queue a chunk, waiting for room unless the consumer has stopped.

        ``release`` (if given) is called once the reader has moved past the chunk, or it
        was dropped: the producer may then reuse the chunk's memory (a pooled block).
        """
        if not self._offer((chunk, release), stop) and release is not None:
            release()

    def close(self, stop: threading.Event) -> None:
        """Signal end of data; the reader then returns b""."""
        self._offer(None, stop)

    def cancel(self) -> None:
        """Make the consumer raise StreamAborted at its next read (or within one poll interval)."""
        self._cancelled.set()

    def discard(self) -> None:
        """Drop queued chunks so a finished consumer does not pin them in memory."""
        self._let_go()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item[1] is not None:
                item[1]()

    def _offer(self, item: tuple[Chunk, Release | None] | None, stop: threading.Event) -> bool:
        """Blocking put that gives up (False) as soon as ``stop`` is set."""
        while not stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

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
        return bytes(read_full(self._read_some, size))

    def read_piece(self) -> Chunk:
        """The rest of the current chunk, or the next whole chunk; b"" at end of data.

        No copy and no size: the gzip reader inflates whatever arrived in one call. The
        piece may be a view of the producer's memory, valid until the next call.
        """
        return self._read_some(len(self._buffer) - self._position or 1 << 62)

    def _read_some(self, size: int) -> Chunk:
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
            self._let_go()
            item = self._take()
            if item is None:
                self._eof = True
                self._buffer, self._position = b"", 0
                return False
            (self._buffer, self._release), self._position = item, 0
        return True

    def _let_go(self) -> None:
        """The current chunk is no longer read: hand its memory back to the producer."""
        self._buffer = b""
        release, self._release = self._release, None
        if release is not None:
            release()

    def _take(self) -> tuple[Chunk, Release | None] | None:
        """The next queued item, polling so a cancel is noticed while the queue is empty."""
        while True:
            if self._cancelled.is_set():
                raise StreamAborted
            try:
                return self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue


class UnpackedStream:
    """Counts decompressed bytes, enforces the unpack limits and keeps the recent tail."""

    def __init__(
        self, source: Skimmable, compressed: ChunkChannel, policy: ValidationPolicy
    ) -> None:
        self._source = source
        self._compressed = compressed
        self._policy = policy
        self.total = 0
        self._tail: deque[tuple[int, Chunk]] = deque()
        self._tail_bytes = 0

    def read(self, size: int = -1, /) -> bytes:
        """Read decompressed bytes, failing the package as soon as a limit is crossed."""
        data = self._source.read(size)
        self._count(data)
        return data

    def read1(self, size: int, /) -> Chunk:
        """At most ``size`` decompressed bytes, as few as one, with the same checks.

        What the source has at hand comes back as a view, not a copy: skipping a GiB of
        member data this way costs the inflating and nothing more.
        """
        data = self._source.read1(size)
        self._count(data)
        return data

    def _count(self, data: Chunk) -> None:
        """Every unpacked byte passes here: the tail, the total and the limits."""
        if self._compressed.cancelled:
            raise StreamAborted
        if data:
            self._remember(data)
            self.total += len(data)
            self._check_limits()

    def all_zero_from(self, offset: int) -> bool:
        """Whether every byte read so far from ``offset`` on is zero (tar end padding)."""
        if self._tail and offset < self._tail[0][0]:
            raise RuntimeError("end-of-archive offset is older than the retained tail")
        for start, chunk in self._tail:
            if start + len(chunk) > offset:
                segment = bytes(chunk[max(0, offset - start) :])  # a view has no count()
                if segment.count(0) != len(segment):
                    return False
        return True

    def _remember(self, data: Chunk) -> None:
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


class ForwardFile:
    """A forward-only seekable view of the unpacked stream, for ``tarfile`` mode ``"r"``.

    tarfile's stream mode (``"r|"``) skips a member's data by reading it through its
    own buffer one ``bufsize`` at a time, copying each piece twice; for a GiB-sized
    ONTAP image that is tens of thousands of Python calls. Random-access mode only asks
    for ``seek``, which this answers with ``read1``: whatever piece the inflater has at
    hand, up to :data:`UNPACK_PIECE`, as a view (no slice, no join). It never seeks back
    when members are read in order (a backward seek raises, as in stream mode).
    """

    def __init__(self, source: Skimmable, skip_piece: int = UNPACK_PIECE) -> None:
        self._source = source
        self._skip_piece = skip_piece
        self._position = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self._position += len(data)
        return data

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = 0, /) -> int:
        """Move forward to ``position`` by reading and dropping what lies before it."""
        if whence != 0:
            raise io.UnsupportedOperation("only absolute seeks are supported")
        if position < self._position:
            raise tarfile.StreamError("seeking backwards is not allowed")
        while self._position < position:
            data = self._source.read1(min(self._skip_piece, position - self._position))
            if not data:
                break  # the end came early: the next read sees it and tarfile reports it
            self._position += len(data)
        return self._position


GZIP_MAGIC = b"\x1f\x8b"


class GunzipReader:
    """Inflates the gzip stream arriving on a ChunkChannel, straight from its chunks.

    A gzip file object pulls compressed input in small reads, copies it, and re-enters
    Python for each; every such entry takes the GIL from the service's other threads.
    This feeds zlib zero-copy windows of the arriving chunks, :data:`UNPACK_PIECE` at a
    time (``max_length`` bounds the output too, so a bomb cannot balloon memory). zlib
    checks each member's CRC32 and length trailer; like :mod:`gzip`, concatenated members
    are read on and zero padding after them is allowed.
    """

    def __init__(self, source: ChunkChannel, piece: int = UNPACK_PIECE) -> None:
        self._source = source
        self._piece = piece
        self._inflater: Any = None  # None between members
        self._input: Chunk = b""  # compressed bytes: the current chunk, or a member's start
        self._offset = 0  # where in ``_input`` the inflater goes on
        self._output = b""
        self._position = 0

    def read(self, size: int = -1, /) -> bytes:
        """``size`` unpacked bytes (all that remain if negative), fewer only at the end.

        Never short otherwise: tarfile takes a short header read for a truncated archive.
        """
        if size < 0:
            return b"".join(iter(lambda: self.read(self._piece), b""))
        return bytes(read_full(self._read_some, size))

    def read1(self, size: int, /) -> Chunk:
        """At most ``size`` unpacked bytes, fewer whenever the inflated piece ends first.

        A view of the inflater's output, valid for good (the output is never reused).
        """
        return self._read_some(size)

    def _read_some(self, size: int) -> Chunk:
        while self._position >= len(self._output):
            if size == 0 or not self._inflate(max(size, self._piece)):
                return b""
        end = min(len(self._output), self._position + size)
        start, self._position = self._position, end
        if start == 0 and end == len(self._output):
            return self._output
        return memoryview(self._output)[start:end]

    def _inflate(self, limit: int) -> bool:
        """Refill the output buffer; False at the clean end of the data.

        Input goes in as windows of at most one piece (zero-copy views of the chunk), so
        zlib's copy of what it did not consume (``unconsumed_tail``) stays small.
        """
        while True:
            if self._inflater is None and not self._begin_member():
                return False
            if self._offset >= len(self._input):
                self._input, self._offset = memoryview(self._source.read_piece()), 0
                if not self._input:
                    raise EOFError("Compressed file ended before the end-of-stream marker "
                                   "was reached")
            window = self._input[self._offset:self._offset + self._piece]
            out = self._inflater.decompress(window, limit)
            if self._inflater.eof:
                self._offset += len(window) - len(self._inflater.unused_data)
                self._inflater = None
            else:
                self._offset += len(window) - len(self._inflater.unconsumed_tail)
            if out:
                self._output, self._position = out, 0
                return True

    def _begin_member(self) -> bool:
        """Start the next gzip member; False if only zero padding (or nothing) is left."""
        head = bytes(self._input[self._offset:])  # rare (once per member): a copy is fine
        while True:
            head = head.lstrip(b"\0")  # zero padding between members is allowed
            if len(head) >= len(GZIP_MAGIC):
                break
            more = self._source.read_piece()
            if not more:
                if head:  # a lone byte that is not padding
                    raise gzip.BadGzipFile(f"Not a gzipped file ({head!r})")
                return False
            head += more
        if not head.startswith(GZIP_MAGIC):
            raise gzip.BadGzipFile(f"Not a gzipped file ({head[:len(GZIP_MAGIC)]!r})")
        self._input, self._offset = head, 0
        self._inflater = zlib_ng.decompressobj(16 + zlib_ng.MAX_WBITS)
        return True
