"""kill -9 of a real ``swdepot serve`` at the worst moments, then a restart.

The process is frozen at a named test point (``swdepot.testpoints``: it writes the point's
name to a marker file and sleeps), killed with SIGKILL while frozen, and started again on
the same data directory. After the restart the repository must be consistent: no partial
or orphan package visible, every job ended in a state that tells the truth, no staging
file left, and the package stored before the crash intact on both copies.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pkgfactory import make_package
from service import ServiceProcess

DOWNLOAD = "/api/cluster/software/download"
PACKAGES = "/api/cluster/software/packages"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blobs(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "store").rglob("*")
            if p.is_file() and ".staging" not in p.parts]


def staging(data_dir: Path) -> list[Path]:
    return list((data_dir / "store").rglob("*.part"))


def wait_for_marker(marker: Path, point: str, proc: ServiceProcess) -> None:
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text() == point):
        assert proc.proc is not None and proc.proc.poll() is None, "swdepot exited"
        assert time.monotonic() < deadline, f"test point {point} never reached"
        time.sleep(0.02)


def start_paused_at(proc: ServiceProcess, tmp_path: Path, point: str, *stored: str):
    """Store ``stored`` URLs normally, then run a process that pauses at ``point``."""
    api = proc.start()
    for url in stored:
        assert api.download(url)["state"] == "success"
    api.session.close()
    proc.stop()
    marker = tmp_path / "paused-at"
    marker.unlink(missing_ok=True)
    with (tmp_path / "serve.log").open("ab") as log:
        api = proc.start(env={"SWDEPOT_PAUSE_AT": point, "SWDEPOT_PAUSE_MARKER": str(marker)},
                         stderr=log)
    return api, marker


def crash_during(proc: ServiceProcess, tmp_path: Path, point: str, stored: tuple[str, ...],
                 action: Callable[[Any], Any]) -> tuple[Any, str]:
    """Start a job with ``action`` in a process paused at ``point``, kill -9 it there and
    start it again; returns the restarted API and the job's uuid."""
    api, marker = start_paused_at(proc, tmp_path, point, *stored)
    uuid = action(api).json()["job"]["uuid"]
    wait_for_marker(marker, point, proc)
    api.session.close()
    proc.kill()
    return proc.start(), uuid


def verify(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swdepot", "repository", "verify",
                           "--data-dir", str(data_dir), *extra],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def kept(import_dir: Path) -> Path:
    """A package stored before the crash; it must come through untouched."""
    return make_package(import_dir, "kept.tgz", "9.14.1", size=128 * 1024)


def assert_kept_intact(api, data_dir: Path, kept: Path) -> None:
    record = api.get(f"{PACKAGES}/9.14.1").json()
    assert record["sha256"] == sha256(kept)
    copies = [p for p in blobs(data_dir) if p.name == "kept.tgz"]
    assert len(copies) == 2 and all(sha256(c) == sha256(kept) for c in copies)


@pytest.mark.parametrize("point", ["download.transferred", "publish.blob_committed",
                                   "publish.blobs_committed"])
def test_kill_before_the_record_exists_the_restarted_node_takes_the_download_over(
        service_process, import_dir, tmp_path, kept, point):
    """The job outlives its process: the restart claims it, removes what the dead process
    committed without recording, downloads again and publishes exactly one package."""
    new = make_package(import_dir, "new.tgz", "9.15.1", size=512 * 1024)
    api, uuid = crash_during(service_process, tmp_path, point, ("file:///kept.tgz",),
                             lambda api: api.post(DOWNLOAD, json={"url": "file:///new.tgz"}))
    data_dir = service_process.data_dir
    body = api.wait_job(uuid)
    assert body["state"] == "success" and body["code"] == 0, body
    assert [r["version"] for r in api.get(PACKAGES).json()["records"]] == ["9.14.1", "9.15.1"]
    assert api.get(f"{PACKAGES}/9.15.1").json()["sha256"] == sha256(new)
    assert sorted(p.name for p in blobs(data_dir)) == ["kept.tgz", "kept.tgz",
                                                       "new.tgz", "new.tgz"]
    assert all(sha256(p) == sha256(new) for p in blobs(data_dir) if p.name == "new.tgz")
    assert staging(data_dir) == []
    assert_kept_intact(api, data_dir, kept)
    api.session.close()
    assert verify(data_dir).returncode == 0


def test_kill_after_the_record_exists_keeps_the_package_and_the_job_succeeds(
        service_process, import_dir, tmp_path, kept):
    new = make_package(import_dir, "new.tgz", "9.15.1", size=512 * 1024)
    api, uuid = crash_during(service_process, tmp_path, "download.published",
                             ("file:///kept.tgz",),
                             lambda api: api.post(DOWNLOAD, json={"url": "file:///new.tgz"}))
    body = api.get(f"/api/cluster/jobs/{uuid}").json()
    assert body["state"] == "success" and body["code"] == 0
    assert api.get(DOWNLOAD).json()["state"] == "success"
    assert api.get(f"{PACKAGES}/9.15.1").json()["sha256"] == sha256(new)
    copies = [p for p in blobs(service_process.data_dir) if p.name == "new.tgz"]
    assert len(copies) == 2 and all(sha256(c) == sha256(new) for c in copies)
    assert_kept_intact(api, service_process.data_dir, kept)
    api.session.close()


@pytest.mark.parametrize("point", ["delete.unlisted", "delete.blob_deleted"])
def test_kill_mid_delete_finishes_the_delete(service_process, import_dir, tmp_path, kept,
                                             point):
    make_package(import_dir, "gone.tgz", "9.15.2", size=256 * 1024)
    api, uuid = crash_during(service_process, tmp_path, point,
                             ("file:///kept.tgz", "file:///gone.tgz"),
                             lambda api: api.delete(f"{PACKAGES}/9.15.2"))
    body = api.get(f"/api/cluster/jobs/{uuid}").json()
    assert body["state"] == "success"
    assert api.get(f"{PACKAGES}/9.15.2").status_code == 404
    assert [p.name for p in blobs(service_process.data_dir)] == ["kept.tgz", "kept.tgz"]
    assert_kept_intact(api, service_process.data_dir, kept)
    api.session.close()


def test_repository_verify_reports_and_repairs_from_the_good_copy(service_process, import_dir,
                                                                  kept, tmp_path):
    api = service_process.start()
    assert api.download("file:///kept.tgz")["state"] == "success"
    api.session.close()
    service_process.stop()
    data_dir = service_process.data_dir
    primary, secondary = sorted(p for p in blobs(data_dir) if p.name == "kept.tgz")
    good = primary.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped bit: a silently corrupt copy
    secondary.write_bytes(bytes(damaged))
    orphan = data_dir / "store" / "primary" / "packages" / "stray" / "stray.tgz"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left behind")
    # a blob written moments ago may be another process's publish about to be recorded
    assert "orphan" not in verify(data_dir).stdout and orphan.exists()
    config = tmp_path / "no-grace.toml"
    config.write_text("orphan_grace = 0\n")
    data_dir_args = ("--config", str(config))

    report = verify(data_dir, *data_dir_args)
    assert report.returncode == 1
    assert "corrupt copy of kept.tgz: NOT repaired" in report.stdout
    assert "orphan packages/stray/stray.tgz (kept)" in report.stdout
    assert secondary.read_bytes() == bytes(damaged)  # without --repair nothing changes

    repaired = verify(data_dir, "--repair", *data_dir_args)
    assert repaired.returncode == 0, repaired.stdout
    assert "repaired from swdepot-01" in repaired.stdout
    assert secondary.read_bytes() == good and primary.read_bytes() == good
    assert not orphan.exists()

    secondary.unlink()  # a missing copy is repaired too
    assert "missing copy of kept.tgz: repaired" in verify(data_dir, "--repair").stdout
    assert secondary.read_bytes() == good

    for copy in (primary, secondary):  # with no good copy left, it can only be reported
        copy.write_bytes(b"garbage")
    lost = verify(data_dir, "--repair")
    assert lost.returncode == 1 and "lost: kept.tgz has no intact copy left" in lost.stdout
