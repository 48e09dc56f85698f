"""Blob stores: where package bytes live, behind an interface that fits object storage.

An :class:`Upload` is written sequentially and becomes visible under its key only on
:meth:`Upload.commit` — for the local store that is fsync + atomic rename, for an
S3-compatible store it would be completing a multipart upload. Nothing above this
interface sees a path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

STAGING = ".staging"


class Upload(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def commit(self, key: str) -> None:
        """Make the written bytes visible under ``key`` (atomically)."""

    def abort(self) -> None:
        """Throw the written bytes away; safe to call more than once."""


class BlobStore(Protocol):
    name: str

    def begin(self) -> Upload: ...

    def open(self, key: str) -> BinaryIO: ...

    def delete(self, key: str) -> None:
        """Remove a blob; a missing one is not an error (deletes are retried)."""

    def exists(self, key: str) -> bool: ...

    def keys(self) -> Iterator[str]: ...

    def sha256(self, key: str) -> str: ...

    def clean_staging(self) -> int:
        """Drop uploads that were never committed (after a crash); returns how many."""

    def free_bytes(self) -> int | None:
        """Room left for new blobs; None when the store has no practical limit (S3)."""


class _LocalUpload:
    """A staging file in the store's own file system, so commit is a rename."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._path = root / STAGING / f"{uuid.uuid4().hex}.part"
        self._fh: BinaryIO | None = self._path.open("xb", buffering=0)

    def write(self, chunk: bytes) -> None:
        """Write all of ``chunk``: an unbuffered write may take only part of it (a nearly
        full disk does exactly that), and a short write must never pass unnoticed."""
        assert self._fh is not None, "upload already finished"
        view = memoryview(chunk)
        while view:
            written = self._fh.write(view)
            if not written:
                raise OSError(errno.EIO, "the store accepted no bytes")
            view = view[written:]

    def commit(self, key: str) -> None:
        assert self._fh is not None, "upload already finished"
        fh, self._fh = self._fh, None
        os.fsync(fh.fileno())
        fh.close()
        final = self._root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self._path, final)
        _fsync_dir(final.parent)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


class LocalDirStore:
    """A directory on local disk; keys are relative paths below it."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        (root / STAGING).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or key.startswith(STAGING):
            raise ValueError(f"invalid store key {key!r}")
        return path

    def begin(self) -> _LocalUpload:
        return _LocalUpload(self.root)

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # package directories hold one file

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self) -> Iterator[str]:
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root)
            if path.is_file() and rel.parts[0] != STAGING:
                yield rel.as_posix()

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with self.open(key) as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def clean_staging(self) -> int:
        count = 0
        for part in (self.root / STAGING).glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
                count += 1
        return count


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: the directory entry itself must reach the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
