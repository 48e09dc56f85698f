"""Validate a package while it downloads, without extracting anything to disk."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from types import TracebackType

from swdepot.packages.archive import ArchiveScan
from swdepot.packages.model import MiB, PackageInfo, PackageInvalid, PackageKind, ValidationPolicy
from swdepot.packages.naming import classify_file_name
from swdepot.packages.streams import ChunkChannel, StreamAborted

logger = logging.getLogger(__name__)

READ_CHUNK = MiB
ABORT_JOIN_SECONDS = 5.0


class _State(Enum):
    """Lifecycle of an inspector as seen by its producer."""

    OPEN = "open"
    FINISHED = "finished"
    ABORTED = "aborted"


class PackageInspector:
    """Validates a package while its bytes stream past, on its own thread.

    The producer (the transfer thread) calls feed() per chunk and finish() at the end, or
    abort() if the transfer failed. failed() turns non-None as soon as the package is known to
    be bad -- for an unacceptable file name even before the first chunk -- so the transfer
    can stop early. Used as a context manager, leaving the block without finish() aborts.
    """

    def __init__(self, file_name: str, policy: ValidationPolicy) -> None:
        self._file_name = file_name
        self._policy = policy
        self._lock = threading.Lock()
        self._state = _State.OPEN
        self._received = 0
        self._error: PackageInvalid | None = None
        self._info: PackageInfo | None = None
        self._done = threading.Event()  # set once a verdict exists (or the scan was cancelled)
        self._channel: ChunkChannel | None = None
        self._thread: threading.Thread | None = None
        try:
            kind = classify_file_name(file_name)
        except PackageInvalid as exc:
            self._error = exc
            self._done.set()
            return
        if kind is PackageKind.IMAGE:
            self._start_scan()

    def __enter__(self) -> PackageInspector:
        """Use as ``with PackageInspector(...) as inspector`` so no thread outlives a crash."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Abort unless finish() already ran (then abort() is a no-op)."""
        self.abort()

    @property
    def received(self) -> int:
        """Bytes fed so far (including those ignored after a failure)."""
        return self._received

    def feed(self, chunk: bytes | memoryview,
             release: Callable[[], None] | None = None) -> None:
        """Hand over the next chunk; blocks only while the inspection queue is full.

        ``bytes`` are passed on without copying. Other buffers are copied once, because
        the caller may reuse them, unless ``release`` is given: then the buffer is read
        in place and ``release`` is called once the inspector no longer needs it (also
        when it is not read at all). After a failure or abort this only counts the bytes.
        """
        if self._state is _State.FINISHED:
            raise RuntimeError("feed() after finish()")
        self._received += len(chunk)
        if (self._channel is None or self._done.is_set() or self._state is _State.ABORTED
                or not chunk):
            if release is not None:
                release()
            return
        if release is None and type(chunk) is not bytes:
            chunk = bytes(chunk)
        self._channel.put(chunk, self._done, release)

    def failed(self) -> PackageInvalid | None:
        """The failure found so far, if any; lets the transfer stop early."""
        return self._error

    def finish(self) -> PackageInfo:
        """Signal the end of data, wait for the verdict and return it or raise PackageInvalid."""
        with self._lock:
            if self._state is _State.ABORTED:
                raise PackageInvalid.because("the transfer was aborted before validation ended")
            first = self._state is _State.OPEN
            self._state = _State.FINISHED
        if first:
            self._conclude()
        if self._error is not None:
            raise self._error
        assert self._info is not None
        return self._info

    def abort(self) -> None:
        """Stop inspecting without a verdict; idempotent, and a no-op after finish()."""
        with self._lock:
            if self._state is not _State.OPEN:
                return
            self._state = _State.ABORTED
        if self._channel is not None and self._thread is not None:
            self._channel.cancel()
            self._thread.join(ABORT_JOIN_SECONDS)

    # --- internals ----------------------------------------------------------------------

    def _start_scan(self) -> None:
        """Run the archive scan on a daemon thread fed through a bounded channel."""
        self._channel = ChunkChannel()
        self._thread = threading.Thread(
            target=self._scan, name=f"package-inspector:{self._file_name}", daemon=True
        )
        self._thread.start()

    def _scan(self) -> None:
        """Thread body: always ends with _done set, whatever happens."""
        assert self._channel is not None
        try:
            info = ArchiveScan(self._file_name, self._policy, self._channel).run()
        except StreamAborted:
            pass
        except PackageInvalid as exc:
            self._error = exc
        except Exception:
            logger.exception("package inspection of %s crashed", self._file_name)
            self._error = PackageInvalid.because("unexpected error while reading the archive")
        else:
            self._info = info
        finally:
            self._done.set()
            self._channel.discard()

    def _conclude(self) -> None:
        """Produce the verdict: join the scan, or judge a firmware file by its byte count."""
        if self._channel is not None and self._thread is not None:
            self._channel.close(self._done)
            self._thread.join()
        elif self._error is None and self._received == 0:
            self._error = PackageInvalid.because("the file is empty")
        elif self._error is None:
            self._info = self._firmware_info()

    def _firmware_info(self) -> PackageInfo:
        """Firmware is opaque to swdepot: accepted unsigned, versioned by its file name."""
        return PackageInfo(
            kind=PackageKind.FIRMWARE,
            version=self._file_name,
            product=None,
            signer=None,
            file_name=self._file_name,
            files=0,
        )


def inspect_file(path: Path, file_name: str, policy: ValidationPolicy) -> PackageInfo:
    """Validate a local file exactly as a download would be (same code path, same limits)."""
    with PackageInspector(file_name, policy) as inspector, path.open("rb") as source:
        while (chunk := source.read(READ_CHUNK)) and inspector.failed() is None:
            inspector.feed(chunk)
        return inspector.finish()
