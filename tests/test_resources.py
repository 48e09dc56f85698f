"""Resource faults: a really full file system, and sizes beyond the configured maximum."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspectors import RecordingInspector
from pkgfactory import make_package
from swdepot.repository.store import LocalDirStore
from swdepot.transfer.sink import PackageSink, TooLarge

SMALL_FS_BYTES = 3 << 20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs of its own: the disk that fills up. Needs root (CI runs as root)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS_BYTES},mode=0700",
                             "swdepot-test", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_disk_full_mid_transfer_fails_cleanly_and_releases_the_space(
        small_fs, settings, start_service, http_server_noauth, content_dir):
    svc = start_service(settings, data_dir=small_fs / "swdepot")
    kept = make_package(content_dir, "kept.tgz", "9.14.1", size=200 * 1024)
    assert svc.api.download(http_server_noauth.url("kept.tgz"))["state"] == "success"
    before = free_bytes(small_fs)
    # two copies of 2 MiB cannot fit in what is left of 3 MiB
    make_package(content_dir, "huge.tgz", "9.15.1", size=2 << 20)

    job = svc.api.download(http_server_noauth.url("huge.tgz"))

    assert job["state"] == "failure" and job["code"] == 10551859, job
    assert "No space left on device" in job["message"]
    assert "gave up" not in job["message"]  # a full disk is not retried
    assert list((small_fs / "swdepot" / "store").rglob("*.part")) == []
    assert free_bytes(small_fs) >= before - 64 * 1024  # the partial copies are gone
    records = svc.api.get("/api/cluster/software/packages").json()["records"]
    assert [r["version"] for r in records] == ["9.14.1"]
    copies = [p for p in (small_fs / "swdepot" / "store").rglob("kept.tgz")]
    assert len(copies) == 2 and all(sha256(c) == sha256(kept) for c in copies)
    # the service goes on working once the space is back
    make_package(content_dir, "after.tgz", "9.14.2", size=100 * 1024)
    assert svc.api.download(http_server_noauth.url("after.tgz"))["state"] == "success"


def test_sink_refuses_bytes_beyond_the_maximum_while_streaming(tmp_path):
    """A server that announces no size (or lies about it) is stopped at the limit itself."""
    stores = [LocalDirStore(tmp_path / "a", "a"), LocalDirStore(tmp_path / "b", "b")]
    sink = PackageSink(lambda: [s.begin() for s in stores], RecordingInspector, max_bytes=1000)
    sink.write(b"x" * 600)
    with pytest.raises(TooLarge):
        sink.write(b"x" * 600)
    assert sink.bytes_written == 600  # the refused chunk reached no copy
    sink.finish()  # the secondary copy is written on its own thread: wait for it
    parts = [p for s in stores for p in (s.root / ".staging").rglob("*.part")]
    assert [p.stat().st_size for p in parts] == [600, 600]
    sink.abort()
    assert [p for s in stores for p in (s.root / ".staging").rglob("*.part")] == []
