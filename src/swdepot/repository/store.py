"""Blob stores: where package bytes live, behind an interface that fits object storage.

An :class:`Upload` is written sequentially and becomes visible under its key only on
:meth:`Upload.commit` — for the local store that is fsync + atomic rename, for an
S3-compatible store it would be completing a multipart upload. Nothing above this
interface sees a path.

An upload may be written by one process and committed by another: a download's bytes
arrive in a process of its own (``software/ingest_process.py``), while the catalog record that
publishes them is written by the service. :attr:`Upload.handle` names the staged bytes
and :meth:`BlobStore.adopt` takes them over by that name (for S3 the handle would be the
multipart upload's id).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import re
import shutil
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from swdepot.nodelock import slug

STAGING = ".staging"
_PART = ".part"
_HANDLE = re.compile(r"[A-Za-z0-9._-]+/[0-9a-f]{32}\.part")
WRITEBACK_WINDOW = 16 << 20  # buffered mode: start writeback every 16 MiB
DIRECT_BUFFER = 1 << 20  # direct mode: bytes gathered before one aligned write
DIRECT_ALIGN = 4096  # covers the logical block size of every common device
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # 0 where the platform has none


class Upload(Protocol):
    def write(self, chunk: bytes | memoryview) -> None:
        """Append ``chunk``. It is only valid during the call: its buffer is reused after."""

    def flush(self) -> None:
        """Make the bytes written so far durable; commit() is cheap afterwards.

        Separate from commit so that several copies can be flushed side by side.
        """

    def commit(self, key: str) -> None:
        """Make the written bytes visible under ``key`` (atomically)."""

    def abort(self) -> None:
        """Throw the written bytes away; safe to call more than once."""

    @property
    def handle(self) -> str:
        """Names the staged bytes for :meth:`BlobStore.adopt` in another process."""

    def detach(self) -> None:
        """After :meth:`flush`: let go of the staged bytes without removing them, for
        another process to adopt."""

    def keep(self) -> None:
        """Stop writing and let go of the staged bytes as they are, neither flushed nor
        removed: the job's checkpoint names them, and a new intake may continue from
        what every copy holds (as after a crash)."""

    @property
    def size(self) -> int:
        """How many bytes are staged."""

    def read_staged(self, length: int) -> Iterator[bytes]:
        """The first ``length`` staged bytes, in pieces (to replay them into a hash)."""


class BlobStore(Protocol):
    name: str

    def begin(self) -> Upload: ...

    def adopt(self, handle: str) -> Upload:
        """The upload another process staged and flushed under ``handle``: ready to be
        committed or aborted here. Raises ValueError for a handle this store never made."""

    def resume(self, handle: str, length: int) -> Upload:
        """The upload a process that is gone staged under ``handle``, cut to its first
        ``length`` bytes, to be written on from there (a taken-over download)."""

    def staged_size(self, handle: str) -> int:
        """How many bytes are staged under ``handle``; ValueError if there is no such."""

    def open(self, key: str) -> BinaryIO: ...

    def delete(self, key: str) -> None:
        """Remove a blob; a missing one is not an error (deletes are retried)."""

    def exists(self, key: str) -> bool: ...

    def keys(self) -> Iterator[str]: ...

    def sha256(self, key: str) -> str: ...

    def changed(self, key: str) -> float:
        """When the blob was last written or committed (seconds since the epoch)."""

    def clean_staging(self, *, keep: Collection[str], abandoned_before: float,
                      own_leftovers: bool) -> int:
        """Drop uploads that were never committed; returns how many.

        Removes any owner's staged uploads untouched since ``abandoned_before`` and, with
        ``own_leftovers`` (at start-up, when the node lock proves its previous life
        dead), every upload of this store's own owner; never the handles in ``keep``
        (staged bytes a job will resume from).
        """

    def free_bytes(self) -> int | None:
        """Room left for new blobs; None when the store has no practical limit (S3)."""


class _LocalUpload:
    """A staging file in the store's own file system, so commit is a rename.

    Where the file system allows it the file is written with ``O_DIRECT``: the bytes go
    from one aligned buffer straight to the device instead of through the page cache.
    Buffered writes cost this machine 0.7 to 1.5 CPU-s per GiB (copying into the cache,
    then writeback) against about 0.1 s direct — and a package is written twice and read
    back rarely, so caching it only evicts more useful pages. Direct writes must be
    aligned in memory, offset and length, so chunks are gathered in an mmap'd buffer and
    written in whole blocks; the unaligned tail is written padded and cut off with
    ``ftruncate``. File systems without ``O_DIRECT`` get buffered writes with early
    writeback (:func:`_start_writeback`).
    """

    def __init__(self, root: Path, name: str, *, adopted: bool = False,
                 resume_at: int | None = None) -> None:
        """A new staging file ``name`` (``owner/hex.part``); with ``adopted`` the flushed
        one another process wrote under that name; with ``resume_at`` that one cut to
        its first ``resume_at`` bytes, to be written on (direct where aligned)."""
        self._root = root
        self._path = root / STAGING / name
        name_given = adopted and resume_at is None
        flags = os.O_WRONLY | os.O_CLOEXEC | (0 if adopted else os.O_CREAT | os.O_EXCL)
        self._fd: int | None = os.open(self._path, flags, 0o644)
        self._size = os.fstat(self._fd).st_size if adopted else 0
        self._flushed = 0  # buffered mode: bytes whose writeback has been started
        self._buffer: mmap.mmap | None = None
        self._pending = 0  # direct mode: bytes in the buffer not yet written in full blocks
        self._durable = name_given  # adopted: flushed by the process that wrote it
        if resume_at is not None:
            os.ftruncate(self._fd, resume_at)
            os.lseek(self._fd, resume_at, os.SEEK_SET)
            self._size = self._flushed = resume_at
        if not name_given and (resume_at or 0) % DIRECT_ALIGN == 0 \
                and _enable_direct(self._fd):
            self._buffer = mmap.mmap(-1, DIRECT_BUFFER)  # page-aligned by construction

    @property
    def handle(self) -> str:
        return f"{self._path.parent.name}/{self._path.name}"

    def detach(self) -> None:
        assert self._durable, "flush before handing an upload over"
        self.keep()

    def keep(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._release_buffer()

    @property
    def size(self) -> int:
        return self._size

    def read_staged(self, length: int) -> Iterator[bytes]:
        with self._path.open("rb") as fh:
            left = length
            while left > 0 and (block := fh.read(min(left, 1 << 20))):
                left -= len(block)
                yield block
        if left > 0:
            raise OSError(errno.EIO, f"{self.handle} holds fewer than {length} bytes")

    def write(self, chunk: bytes | memoryview) -> None:
        """Append all of ``chunk``; raises OSError (ENOSPC, EIO...) if the store cannot.

        A page-aligned chunk of whole blocks (the transfer pipeline's pooled blocks) is
        written directly as it is; anything else is gathered in the aligned buffer.
        """
        assert self._fd is not None, "upload already finished"
        self._durable = False
        view = memoryview(chunk)
        if self._buffer is None:
            _write_all(self._fd, view)
            self._size += len(view)
            if self._size - self._flushed >= WRITEBACK_WINDOW:
                self._flushed = _start_writeback(self._fd, self._flushed, self._size)
            return
        if not self._pending and _aligned(view):
            self._write_direct(view)
            self._size += len(view)
            return
        while view:
            take = min(len(view), DIRECT_BUFFER - self._pending)
            self._buffer[self._pending:self._pending + take] = view[:take]
            self._pending += take
            view = view[take:]
            if self._pending == DIRECT_BUFFER:
                self._write_direct(memoryview(self._buffer))
                self._pending = 0
        self._size += len(chunk)

    def _write_direct(self, view: memoryview) -> None:
        """Write aligned whole blocks directly, or buffered from now on if the file
        system accepted ``O_DIRECT`` at open but refuses it at write (EINVAL)."""
        assert self._fd is not None
        try:
            _write_all(self._fd, view, direct=True)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _disable_direct(self._fd)
            _write_all(self._fd, view)

    def flush(self) -> None:
        """Write the buffered tail (padded, then truncated to the true size) and fsync.

        The tail stays in the buffer and the file offset goes back to its start, so
        writing may go on after a flush: the next full block overwrites the padding.
        """
        assert self._fd is not None, "upload already finished"
        if self._durable:
            return
        if self._buffer is not None and self._pending:
            padded = -(-self._pending // DIRECT_ALIGN) * DIRECT_ALIGN
            self._buffer[self._pending:padded] = bytes(padded - self._pending)
            self._write_direct(memoryview(self._buffer)[:padded])
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size - self._pending, os.SEEK_SET)
        os.fsync(self._fd)
        self._durable = True

    def commit(self, key: str) -> None:
        self.flush()
        assert self._fd is not None
        fd, self._fd = self._fd, None
        os.close(fd)
        self._release_buffer()
        final = self._root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self._path, final)
        _fsync_dir(final.parent)

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._release_buffer()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _release_buffer(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None


class LocalDirStore:
    """A directory on local disk; keys are relative paths below it.

    Each owner (a node: one live process at a time, ``nodelock.py``) stages in a
    directory of its own below ``.staging``, so a process's clean-up can tell its own
    leftovers from another live process's uploads.
    """

    def __init__(self, root: Path, name: str, owner: str = "operator") -> None:
        self.root = root
        self.name = name
        self._own = slug(owner)
        (root / STAGING / self._own).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or key.startswith(STAGING):
            raise ValueError(f"invalid store key {key!r}")
        return path

    def begin(self) -> _LocalUpload:
        return _LocalUpload(self.root, f"{self._own}/{uuid.uuid4().hex}{_PART}")

    def adopt(self, handle: str) -> _LocalUpload:
        self._check_handle(handle)
        return _LocalUpload(self.root, handle, adopted=True)

    def resume(self, handle: str, length: int) -> _LocalUpload:
        self._check_handle(handle)
        return _LocalUpload(self.root, handle, adopted=True, resume_at=length)

    def staged_size(self, handle: str) -> int:
        self._check_handle(handle)
        return (self.root / STAGING / handle).stat().st_size

    def _check_handle(self, handle: str) -> None:
        # an owner's directory and a staging file's name, never a path of any other shape
        if not _HANDLE.fullmatch(handle) or handle.startswith(".."):
            raise ValueError(f"not an upload handle of this store: {handle!r}")
        if not (self.root / STAGING / handle).is_file():
            raise ValueError(f"no staged upload {handle!r} in this store")

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

    def changed(self, key: str) -> float:
        info = self._path(key).stat()
        return max(info.st_mtime, info.st_ctime)  # a rename (commit) changes ctime

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def clean_staging(self, *, keep: Collection[str], abandoned_before: float,
                      own_leftovers: bool) -> int:
        count = 0
        staging = self.root / STAGING
        # staging files of this owner and of others, and loose ones of older versions
        for part in [*staging.glob(f"*/*{_PART}"), *staging.glob(f"*{_PART}")]:
            rel = part.relative_to(staging).as_posix()
            if rel in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                if not (own_leftovers and part.parent.name == self._own):
                    info = part.stat()
                    if max(info.st_mtime, info.st_ctime) >= abandoned_before:
                        continue  # another owner's, and it may still be at work
                part.unlink()
                count += 1
        return count


def _enable_direct(fd: int) -> bool:
    """Switch ``fd`` to direct I/O; False where the file system refuses (EINVAL) or the
    platform has no ``O_DIRECT``, and for ``SWDEPOT_BUFFERED_STORE=1`` (for comparison)."""
    if not _O_DIRECT or os.environ.get("SWDEPOT_BUFFERED_STORE") == "1":
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _O_DIRECT)
    except OSError:
        return False
    return True


def _aligned(view: memoryview) -> bool:
    """Whether ``view`` can be written with O_DIRECT as it is: whole blocks at an aligned
    address. Only writable buffers expose their address to ctypes; bytes never qualify."""
    if not view.nbytes or view.nbytes % DIRECT_ALIGN or view.readonly or not view.contiguous:
        return False
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    return address % DIRECT_ALIGN == 0


def _disable_direct(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)


def _write_all(fd: int, view: memoryview, *, direct: bool = False) -> None:
    """Write all of ``view``; a short write must never pass unnoticed.

    A nearly full disk takes part of a write. Buffered, the rest is simply retried (and
    then fails with ENOSPC); direct, the rest would be misaligned, so a short write is
    reported as the disk being full.
    """
    while view:
        written = os.write(fd, view)
        if not written:
            raise OSError(errno.EIO, "the store accepted no bytes")
        if direct and written < len(view):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


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
