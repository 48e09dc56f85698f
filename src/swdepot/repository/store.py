"""Blob stores: where package bytes live, behind an interface that fits object storage.

An :class:`Upload` is written sequentially and becomes visible under its key only on
:meth:`Upload.commit` — for the local store that is fsync + atomic rename, for an
S3-compatible store it would be completing a multipart upload. Nothing above this
interface sees a path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

STAGING = ".staging"
WRITEBACK_WINDOW = 16 << 20


class Upload(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def flush(self) -> None:
        """Make the bytes written so far durable; commit() is cheap afterwards.

        Separate from commit so that several copies can be flushed side by side.
        """

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
        self._size = 0
        self._flushed = 0  # bytes whose writeback has been started

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
        self._size += len(chunk)
        if self._size - self._flushed >= WRITEBACK_WINDOW:
            self._flushed = _start_writeback(self._fh.fileno(), self._flushed, self._size)

    def flush(self) -> None:
        assert self._fh is not None, "upload already finished"
        os.fsync(self._fh.fileno())

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


_libc = ctypes.CDLL(None, use_errno=True)
_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)


def _start_writeback(fd: int, start: int, end: int) -> int:
    """Ask Linux to start writing ``[start, end)`` to disk now, without waiting for it.

    The pages then reach the disk while the transfer goes on, so the fsync at commit
    finds little left to do. ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` is Linux-only
    and not in the ``os`` module; elsewhere this is a no-op and fsync does all the work.
    Returns the new start of the range not yet handed to writeback.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, start, end - start, _SYNC_FILE_RANGE_WRITE)
    return end
