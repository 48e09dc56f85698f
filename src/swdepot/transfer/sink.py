"""Where transferred bytes go: every store copy, the sha256 and the package inspector.

One pass over the bytes does everything, so a package is never read back after its
transfer: both node copies are written from the same buffer, the digest is updated
inline (OpenSSL's SHA-NI is faster than the wire) and the inspector validates the
archive on its own thread.

Because the sink holds the running digest and the inspector's state, a transfer that
failed half-way continues by appending: ``bytes_written`` is where to resume. When the
server cannot continue (it ignores ranges, or the file changed), :meth:`rewind` throws
the bytes away and starts again from zero with fresh uploads and a fresh inspector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

from swdepot.errors import DOWNLOAD_FAILED, OntapError
from swdepot.repository.repository import placement_failed
from swdepot.repository.store import Upload


class Inspector(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def failed(self) -> OntapError | None: ...

    def abort(self) -> None: ...


class TooLarge(OntapError):
    """The package exceeds the configured maximum size."""

    def __init__(self, limit: int) -> None:
        super().__init__(DOWNLOAD_FAILED, "Package download failed: the package is larger than "
                         f"the configured maximum of {limit} bytes.")


class PackageSink:
    """A write target for protocol clients; raises to stop a transfer early.

    ``open_uploads`` opens one upload per node store and ``new_inspector`` starts a
    validation; both are called once now and again on every :meth:`rewind`.
    """

    def __init__(self, open_uploads: Callable[[], Sequence[Upload]],
                 new_inspector: Callable[[], Inspector], max_bytes: int) -> None:
        self._open_uploads = open_uploads
        self._new_inspector = new_inspector
        self._max_bytes = max_bytes
        self.uploads: Sequence[Upload] = open_uploads()
        self.inspector: Inspector = new_inspector()
        self._digest = hashlib.sha256()
        self.bytes_written = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk everywhere; ``bytes_written`` counts only what reached every copy."""
        if self.bytes_written + len(chunk) > self._max_bytes:
            raise TooLarge(self._max_bytes)
        failure = self.inspector.failed()
        if failure is not None:
            raise failure
        try:
            for upload in self.uploads:
                upload.write(chunk)
        except OSError as exc:  # disk full, quota, I/O error: no retry can help
            raise placement_failed(exc.strerror or str(exc)) from None
        self.bytes_written += len(chunk)
        self._digest.update(chunk)
        self.inspector.feed(chunk)

    def check_expected_size(self, expected: int | None) -> None:
        """Refuse early when the server announces a size above the limit."""
        if expected is not None and expected > self._max_bytes:
            raise TooLarge(self._max_bytes)

    def rewind(self) -> None:
        """Forget every byte: the next write is the first byte of the file again."""
        self.abort()
        self.uploads = self._open_uploads()
        self.inspector = self._new_inspector()
        self._digest = hashlib.sha256()
        self.bytes_written = 0

    def abort(self) -> None:
        """Stop the inspection and throw the uploads away (their space is released)."""
        self.inspector.abort()
        for upload in self.uploads:
            upload.abort()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()
