"""Where transferred bytes go: every store copy, the sha256 and the package inspector.

One pass over the bytes does everything, so a package is never read back after its
transfer. The work is spread over the machine's cores as a pipeline: the transfer thread
receives and gathers 1 MiB blocks; one worker thread per store copy writes it (direct
I/O where possible, see ``repository/store.py``), one more updates the sha256, and the
inspector validates the archive on its own thread. Writing, hashing and inflating all
release the GIL, so they really run side by side and the transfer thread never waits
on the disk. Queues between them are bounded (a few 1 MiB blocks), which keeps memory
flat whatever the package size.

Because the sink holds the running digest and the inspector's state, a transfer that
failed half-way continues by appending: ``bytes_written`` is where to resume. When the
server cannot continue (it ignores ranges, or the file changed), :meth:`rewind` throws
the bytes away and starts again from zero with fresh uploads and a fresh inspector.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from swdepot.errors import DOWNLOAD_FAILED, OntapError
from swdepot.repository.repository import placement_failed
from swdepot.repository.store import Upload

if TYPE_CHECKING:
    from swdepot.packages.model import PackageInfo

log = logging.getLogger(__name__)

QUEUE_DEPTH = 2  # 1 MiB blocks: enough to ride out jitter, little enough to keep RSS flat
POOL_BLOCKS = QUEUE_DEPTH + 2  # one being filled, one in flight besides the queued ones
BLOCK_SIZE = 1 << 20
_DONE = b""


class Inspector(Protocol):
    def feed(self, chunk: bytes | memoryview,
             release: Callable[[], None] | None = None) -> None: ...

    def failed(self) -> OntapError | None: ...

    def finish(self) -> PackageInfo:
        """After the last byte: the package's facts, or the reason it is refused."""

    def abort(self) -> None: ...


class TooLarge(OntapError):
    """The package exceeds the configured maximum size."""

    def __init__(self, limit: int) -> None:
        super().__init__(DOWNLOAD_FAILED, "Package download failed: the package is larger than "
                         f"the configured maximum of {limit} bytes.")


def _hash_into(upload: Upload, length: int, digest: Any) -> None:
    with contextlib.suppress(OSError):  # a short copy hashes short, and so differs
        for piece in upload.read_staged(length):
            digest.update(piece)


def _write_failed(exc: OSError) -> OntapError:
    """Disk full, quota, I/O error: no retry can help, the repository cannot take it."""
    return placement_failed(exc.strerror or str(exc))


class _Block:
    """One page-aligned 1 MiB buffer, shared read-only by every worker once it is full.

    Page alignment lets a store write it with ``O_DIRECT`` as it is, without copying it
    into a buffer of its own. The last worker to finish with a block calls ``on_free``:
    pooled blocks go back to their pool, so the same few warm pages are reused for the
    whole transfer; a block another process filled goes back to that process.
    """

    __slots__ = ("_holders", "_lock", "_on_free", "buffer", "filled")

    def __init__(self, buffer: mmap.mmap | memoryview,
                 on_free: Callable[[_Block], None], filled: int = 0) -> None:
        self.buffer = buffer
        self.filled = filled
        self._holders = 0
        self._lock = threading.Lock()
        self._on_free = on_free

    def share(self, holders: int) -> memoryview:
        """Hand the filled part to ``holders`` workers; each must call :meth:`release`."""
        self._holders = holders
        return memoryview(self.buffer)[:self.filled]

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            last = self._holders == 0
        if last:
            self._on_free(self)


class _Worker:
    """One consumer of the block stream on its own thread: a store copy or the sha256.

    Each worker has its own bounded queue, so a slow disk holds up the transfer (back-
    pressure) but never the other consumers, and a direct write that waits on the device
    costs no CPU while the hash and the inspector go on.
    """

    def __init__(self, name: str, consume: Callable[[memoryview], None],
                 conclude: Callable[[], None] = lambda: None) -> None:
        self._consume = consume
        self._conclude = conclude
        self._queue: queue.Queue[tuple[memoryview, _Block] | bytes] = queue.Queue(QUEUE_DEPTH)
        self.error: OntapError | None = None
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, view: memoryview, block: _Block) -> None:
        """Hand a shared block over, waiting while the queue is full (back-pressure)."""
        self._offer((view, block))

    def _offer(self, item: tuple[memoryview, _Block] | bytes) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not _DONE:
                assert isinstance(item, tuple)
                view, block = item
                if not self._stop.is_set():
                    self._consume(view)
                block.release()
            if not self._stop.is_set():
                self._conclude()
        except OSError as exc:
            self.error = _write_failed(exc)
            self._stop.set()
        except Exception:  # a bug must fail the download, not leave the producer waiting
            log.exception("transfer worker %s crashed", self._thread.name)
            self.error = OntapError(DOWNLOAD_FAILED, "Package download failed: internal error.")
            self._stop.set()

    def close(self) -> None:
        """No more chunks: the thread consumes what is queued, concludes and ends."""
        if not self._closed:
            self._closed = True
            self._offer(_DONE)

    def finish(self) -> None:
        """Wait until every queued chunk is consumed and concluded; re-raise a failure."""
        self.close()
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


class BlockGatherer:
    """Gathers a transfer's chunks into :data:`BLOCK_SIZE` blocks, as every sink must.

    libcurl hands over whatever one ``recv`` returned, about 16 KiB at a time even with a
    1 MiB buffer. Gathered into 1 MiB blocks, the per-block work (queue hand-overs,
    writes, messages) runs 64 times less often. Subclasses say where an empty block
    comes from (:meth:`_open_block`: it sets ``_target`` and ``_block_start``), where a
    full one goes (:meth:`_pass_on`: it clears ``_target``), and what stops the transfer
    (:meth:`_check`, once per block, so a bad package still stops it within a MiB).
    """

    def __init__(self, max_bytes: int, bytes_written: int = 0) -> None:
        self._max_bytes = max_bytes
        self._restart(bytes_written)

    def _restart(self, bytes_written: int) -> None:
        self.bytes_written = bytes_written
        self._target: mmap.mmap | memoryview | None = None  # memory being filled, if any
        self._block_start = 0  # where the current block begins in ``_target``
        self._filled = 0

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def write(self, chunk: bytes) -> None:
        """Accept a chunk; ``bytes_written`` counts what every copy will hold."""
        size = len(chunk)
        if self.bytes_written + size > self._max_bytes:
            raise TooLarge(self._max_bytes)
        if self._target is not None and self._filled + size < BLOCK_SIZE:
            at = self._block_start + self._filled  # the common case: one copy, no checks
            self._target[at:at + size] = chunk
            self._filled += size
            self.bytes_written += size
            return
        self._write_across_blocks(chunk)

    def _write_across_blocks(self, chunk: bytes) -> None:
        """The chunk fills the current block: pass it on and continue in fresh blocks."""
        self._check()
        self.bytes_written += len(chunk)
        view = memoryview(chunk)
        while view:
            if self._target is None:
                self._open_block()
            assert self._target is not None
            take = min(len(view), BLOCK_SIZE - self._filled)
            at = self._block_start + self._filled
            self._target[at:at + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == BLOCK_SIZE:
                self._pass_on()

    def check_expected_size(self, expected: int | None) -> None:
        """Refuse early when the server announces a size above the limit."""
        if expected is not None and expected > self._max_bytes:
            raise TooLarge(self._max_bytes)

    def rewind(self) -> None:
        """Forget every byte: the next write is the first byte of the file again."""
        raise NotImplementedError

    def _check(self) -> None:
        raise NotImplementedError

    def _open_block(self) -> None:
        raise NotImplementedError

    def _pass_on(self) -> None:
        raise NotImplementedError


class CopiesDiffer(Exception):
    """Staged copies to continue from do not hold the same bytes: start from zero."""


class PackageSink(BlockGatherer):
    """A write target for protocol clients; raises to stop a transfer early.

    ``open_uploads`` opens one upload per node store and ``new_inspector`` starts a
    validation; both are called once now and again on every :meth:`rewind`. Call
    :meth:`finish` after the last chunk (before publishing) and :meth:`abort` when the
    transfer fails, so the copy thread always ends.

    ``resume``: uploads a process that died had staged (one per store, each cut to the
    same length): the sink starts with them instead of new ones, and replays their bytes
    through the sha256 and the inspector, so that the hash and the validation of the
    whole package are as if it had arrived in one go; ``bytes_written`` is then where
    the transfer continues. Raises :class:`CopiesDiffer` (and leaves the uploads to the
    caller) when the copies' bytes differ.
    """

    def __init__(self, open_uploads: Callable[[], Sequence[Upload]],
                 new_inspector: Callable[[], Inspector], max_bytes: int, *,
                 resume: Sequence[Upload] | None = None) -> None:
        super().__init__(max_bytes)
        self._open_uploads = open_uploads
        self._new_inspector = new_inspector
        self._begin(resume)

    def _begin(self, resume: Sequence[Upload] | None = None) -> None:
        self.uploads: Sequence[Upload] = resume if resume else self._open_uploads()
        if not self.uploads:
            raise ValueError("a sink needs at least one upload")
        self.inspector: Inspector = self._new_inspector()
        self._digest = hashlib.sha256()
        self._workers = [_Worker(f"swdepot-copy-{n}", upload.write, upload.flush)
                         for n, upload in enumerate(self.uploads)]
        self._workers.append(_Worker("swdepot-sha256", self._digest.update))
        self._pool: queue.SimpleQueue[_Block] = queue.SimpleQueue()
        for _ in range(POOL_BLOCKS):
            self._pool.put(_Block(mmap.mmap(-1, BLOCK_SIZE), self._recycle))
        self._block: _Block | None = None  # the pooled block being filled
        self._restart(0)
        if resume:
            try:
                self._restart(self._replay(resume))
            except BaseException:
                for worker in self._workers:
                    worker.abort()
                self.inspector.abort()
                raise

    def _replay(self, uploads: Sequence[Upload]) -> int:
        """Hash and inspect the staged bytes again; check every copy holds the same."""
        length = uploads[0].size
        if any(upload.size != length for upload in uploads):
            raise CopiesDiffer("the staged copies differ in length")
        others = [hashlib.sha256() for _ in uploads[1:]]
        threads = [threading.Thread(target=_hash_into, args=(u, length, d), daemon=True)
                   for u, d in zip(uploads[1:], others, strict=True)]
        for thread in threads:
            thread.start()
        try:
            for piece in uploads[0].read_staged(length):
                self._check()
                self._digest.update(piece)
                self.inspector.feed(piece)
        finally:
            for thread in threads:
                thread.join()
        if any(d.hexdigest() != self._digest.hexdigest() for d in others):
            raise CopiesDiffer("the staged copies hold different bytes")
        return length

    def write_block(self, view: memoryview, release: Callable[[], None]) -> None:
        """Take a block filled elsewhere (a transfer process's shared memory), uncopied.

        ``release`` is called, from whichever thread finishes last, once no worker needs
        the bytes any more; the caller must not reuse the memory before that.
        """
        size = len(view)
        self.check_expected_size(self.bytes_written + size)
        self._check()
        self._pass_on()  # bytes written the ordinary way come first
        self.bytes_written += size
        self._share(_Block(view, lambda _block: release(), filled=size))

    def _recycle(self, block: _Block) -> None:
        block.filled = 0
        self._pool.put(block)

    def _open_block(self) -> None:
        """A free pooled block, waiting while every block is still in use (back-pressure)."""
        while True:
            try:
                self._block = self._pool.get(timeout=0.1)
                break
            except queue.Empty:
                self._check()
        self._target, self._block_start, self._filled = self._block.buffer, 0, 0

    def _check(self) -> None:
        failure = self.failure()
        if failure is not None:
            raise failure from None  # callers may be inside an except (an empty pool)

    def failure(self) -> OntapError | None:
        """Why the package cannot be kept, if that is already known (bad archive, full
        disk...): the transfer can stop early."""
        return self.inspector.failed() or next(
            (w.error for w in self._workers if w.error is not None), None)

    def _pass_on(self) -> None:
        """Send the pooled block being filled on, if it holds anything."""
        block, self._block, self._target = self._block, None, None
        if block is not None and self._filled:
            block.filled = self._filled
            self._share(block)

    def _share(self, block: _Block) -> None:
        """Send a block to every worker and to the inspector, uncopied.

        Each of them releases it when done; the last release frees the block.
        """
        view = block.share(len(self._workers) + 1)
        self.inspector.feed(view, block.release)
        for worker in self._workers:
            worker.put(view, block)

    def finish(self) -> None:
        """Every byte is in every copy, durable, and hashed; raises if a copy failed.

        Each copy flushes on its own worker thread, so the copies' last writes and
        fsyncs overlap instead of queueing behind each other.
        """
        self._pass_on()
        for worker in self._workers:
            worker.close()
        try:
            for worker in self._workers:
                worker.finish()
        except OntapError:
            for worker in self._workers:
                worker.abort()
            raise

    def rewind(self) -> None:
        """Forget every byte: the next write is the first byte of the file again."""
        self.abort()
        self._begin()

    def suspend(self) -> None:
        """Stop copying and inspecting, and let go of the uploads as they are: they stay
        staged, for another intake to continue from (as after a crash)."""
        for worker in self._workers:
            worker.abort()
        self.inspector.abort()
        for upload in self.uploads:
            upload.keep()

    def abort(self) -> None:
        """Stop copying and inspecting, and throw the uploads away (space is released)."""
        for worker in self._workers:
            worker.abort()
        self.inspector.abort()
        for upload in self.uploads:
            upload.abort()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()
