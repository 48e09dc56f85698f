"""Where transferred bytes go: every store copy, the sha256 and the package inspector.

One pass over the bytes does everything, so a package is never read back after its
transfer: both node copies are written from the same buffer, the digest is updated
inline (OpenSSL's SHA-NI is faster than the wire) and the inspector validates the
archive on its own thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from swdepot.errors import DOWNLOAD_FAILED, OntapError
from swdepot.repository.store import Upload


class Inspector(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def failed(self) -> OntapError | None: ...


class TooLarge(OntapError):
    """The package exceeds the configured maximum size."""

    def __init__(self, limit: int) -> None:
        super().__init__(DOWNLOAD_FAILED, "Package download failed: the package is larger than "
                         f"the configured maximum of {limit} bytes.")


class PackageSink:
    """A write target for protocol clients; raises to stop a transfer early."""

    def __init__(self, uploads: Sequence[Upload], inspector: Inspector, max_bytes: int) -> None:
        self._uploads = uploads
        self._inspector = inspector
        self._max_bytes = max_bytes
        self._digest = hashlib.sha256()
        self.bytes_written = 0

    def write(self, chunk: bytes) -> None:
        self.bytes_written += len(chunk)
        if self.bytes_written > self._max_bytes:
            raise TooLarge(self._max_bytes)
        failure = self._inspector.failed()
        if failure is not None:
            raise failure
        for upload in self._uploads:
            upload.write(chunk)
        self._digest.update(chunk)
        self._inspector.feed(chunk)

    def check_expected_size(self, expected: int | None) -> None:
        """Refuse early when the server announces a size above the limit."""
        if expected is not None and expected > self._max_bytes:
            raise TooLarge(self._max_bytes)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()
