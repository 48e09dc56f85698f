"""The package sink: every copy gets exactly the bytes, however they were chunked."""

from __future__ import annotations

import hashlib
import mmap
import random
from pathlib import Path

import pytest

from inspectors import RecordingInspector
from swdepot.repository.store import LocalDirStore
from swdepot.transfer.sink import BLOCK_SIZE, PackageSink


@pytest.mark.parametrize("sizes", ["tiny", "curl-like", "mixed", "huge"])
def test_copies_hold_exactly_the_stream(tmp_path: Path, sizes: str) -> None:
    rng = random.Random(sizes)
    data = rng.randbytes(3 * BLOCK_SIZE + 12345)
    chunk_size = {"tiny": lambda: rng.randint(1, 7), "curl-like": lambda: 16384,
                  "mixed": lambda: rng.choice([1, 4096, 16384, BLOCK_SIZE, 3 * BLOCK_SIZE]),
                  "huge": lambda: 2 * BLOCK_SIZE + 1}[sizes]
    if sizes == "tiny":
        data = data[: BLOCK_SIZE + 999]  # a byte at a time through 3 MiB would be slow
    stores = [LocalDirStore(tmp_path / "a", "a"), LocalDirStore(tmp_path / "b", "b")]
    inspector = RecordingInspector()
    sink = PackageSink(lambda: [s.begin() for s in stores], lambda: inspector, 1 << 40)
    offset = 0
    while offset < len(data):
        step = chunk_size()
        sink.write(data[offset:offset + step])
        offset += step
        assert sink.bytes_written == min(offset, len(data))
    sink.finish()
    assert sink.sha256 == hashlib.sha256(data).hexdigest()
    for store, upload in zip(stores, sink.uploads, strict=True):
        upload.commit("k")
        assert (store.root / "k").read_bytes() == data
    assert sum(inspector.blocks) == len(data)
    # small chunks are gathered: every block but the last is a full one (or a large chunk)
    assert all(size >= BLOCK_SIZE for size in inspector.blocks[:-1])


def test_rewind_drops_gathered_bytes(tmp_path: Path) -> None:
    stores = [LocalDirStore(tmp_path / "a", "a"), LocalDirStore(tmp_path / "b", "b")]
    sink = PackageSink(lambda: [s.begin() for s in stores], RecordingInspector, 1 << 40)
    sink.write(b"stale" * 1000)
    sink.rewind()
    sink.write(b"fresh")
    sink.finish()
    assert sink.bytes_written == 5 and sink.sha256 == hashlib.sha256(b"fresh").hexdigest()
    for store, upload in zip(stores, sink.uploads, strict=True):
        upload.commit("k")
        assert (store.root / "k").read_bytes() == b"fresh"


def _aligned_block(data: bytes) -> memoryview:
    """``data`` in page-aligned memory, as a transfer process's ring slot holds it."""
    buffer = mmap.mmap(-1, max(len(data), 1))
    buffer[:len(data)] = data
    return memoryview(buffer)[:len(data)]


@pytest.mark.parametrize("buffered", [False, True])
def test_shared_blocks_reach_every_copy_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               buffered: bool) -> None:
    """Blocks filled elsewhere (whole, a partial one, then unaligned ones after it, as a
    resumed transfer sends) end up in order in both copies, each given back once."""
    if buffered:
        monkeypatch.setenv("SWDEPOT_BUFFERED_STORE", "1")
    rng = random.Random(buffered)
    pieces = [rng.randbytes(BLOCK_SIZE) for _ in range(9)]
    pieces += [rng.randbytes(5000), rng.randbytes(BLOCK_SIZE), rng.randbytes(4096 * 3),
               rng.randbytes(BLOCK_SIZE - 1)]
    stores = [LocalDirStore(tmp_path / "a", "a"), LocalDirStore(tmp_path / "b", "b")]
    sink = PackageSink(lambda: [s.begin() for s in stores], RecordingInspector, 1 << 40)
    released: list[int] = []
    keep = [_aligned_block(piece) for piece in pieces]
    for n, view in enumerate(keep):
        sink.write_block(view, lambda n=n: released.append(n))
    sink.finish()
    data = b"".join(pieces)
    assert sink.sha256 == hashlib.sha256(data).hexdigest()
    assert sorted(released) == list(range(len(pieces)))  # every block given back once
    for store, upload in zip(stores, sink.uploads, strict=True):
        upload.commit("k")
        assert (store.root / "k").read_bytes() == data
