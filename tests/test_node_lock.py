"""One live process per node and data directory; no process fails or deletes another's work.

The scenario a new user runs into: while a download runs, a second ``swdepot serve`` is
started on the same data directory. With the same node name it is refused before it
touches anything; with another ``--node-name`` it runs beside the first. Either way the
first service's download completes, byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkgfactory import make_package
from servers import Fault
from service import ADMIN_PASSWORD, LOOPBACK_ONLY, ServiceProcess, free_port
from swdepot.nodelock import NodeBusy, NodeLock
from swdepot.persistence.sqlite import Database, SqlitePackageCatalog
from swdepot.repository.repository import Repository
from swdepot.repository.store import LocalDirStore

DOWNLOAD = "/api/cluster/software/download"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_lock_is_exclusive_per_node_and_freed_on_release(tmp_path):
    first = NodeLock.acquire(tmp_path, "swdepot-01")
    with pytest.raises(NodeBusy) as refused:
        NodeLock.acquire(tmp_path, "swdepot-01")
    assert f"by process {os.getpid()}" in str(refused.value)
    assert "--node-name" in str(refused.value)
    other = NodeLock.acquire(tmp_path, "swdepot-02")  # another node shares the directory
    first.release()
    first.release()  # idempotent
    again = NodeLock.acquire(tmp_path, "swdepot-01")
    again.release()
    other.release()


def test_a_killed_holder_frees_the_lock(tmp_path):
    """The kernel drops a dead process's flock: a crash never blocks the restart."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path;"
         "from swdepot.nodelock import NodeLock;"
         "NodeLock.acquire(Path(sys.argv[1]), 'n1'); print('held', flush=True);"
         "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(NodeBusy, match=f"process {holder.pid}"):
            NodeLock.acquire(tmp_path, "n1")
    finally:
        holder.kill()
        holder.wait()
    NodeLock.acquire(tmp_path, "n1").release()


def _slow_download(service: ServiceProcess, http_server, content_dir: Path, size: int
                   ) -> tuple[object, str, Path]:
    pkg = make_package(content_dir, "slow.tgz", "9.15.1", size=size)
    http_server.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=512 * 1024)
    api = service.start()
    started = api.post(DOWNLOAD, json={"url": http_server.url("slow.tgz")})
    assert started.status_code == 202, started.text
    uuid = started.json()["job"]["uuid"]
    api.wait_download_bytes(200_000)
    return api, uuid, pkg


def _serve(data_dir: Path, import_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SWDEPOT_ADMIN_PASSWORD": ADMIN_PASSWORD}
    return subprocess.Popen(
        [sys.executable, "-m", "swdepot", "serve", "--data-dir", str(data_dir),
         "--port", str(free_port()), "--import-dir", str(import_dir),
         "--allow-network", LOOPBACK_ONLY[0], "--log-level", "warning", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_second_serve_of_the_same_node_is_refused_and_the_first_download_completes(
        service_process, http_server_noauth, content_dir, import_dir):
    api, uuid, pkg = _slow_download(service_process, http_server_noauth, content_dir,
                                    2 << 20)
    staged = sorted((service_process.data_dir / "store").rglob("*.part"))
    assert len(staged) == 2
    second = _serve(service_process.data_dir, import_dir)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 1
    assert service_process.proc is not None
    message = err.decode()
    assert f"already served from {service_process.data_dir} by process " \
           f"{service_process.proc.pid}" in message, message
    assert "Traceback" not in message
    assert sorted((service_process.data_dir / "store").rglob("*.part")) == staged
    job = api.wait_job(uuid, timeout=60)
    assert job["state"] == "success", job
    record = api.get("/api/cluster/software/packages/9.15.1?fields=sha256").json()
    assert record["sha256"] == sha256(pkg)
    copies = [p for p in (service_process.data_dir / "store").rglob("slow.tgz")]
    assert len(copies) == 2 and all(c.read_bytes() == pkg.read_bytes() for c in copies)
    api.session.close()


def test_another_node_on_the_same_data_directory_leaves_the_first_ones_download_alone(
        service_process, http_server_noauth, content_dir, import_dir, tmp_path):
    api, uuid, pkg = _slow_download(service_process, http_server_noauth, content_dir,
                                    2 << 20)
    staged = sorted((service_process.data_dir / "store").rglob("*.part"))
    other = ServiceProcess(service_process.data_dir, import_dir, free_port())
    try:
        other_api = other.start(args=("--node-name", "swdepot-02"))
        # it started and recovered, and neither failed the job nor touched its staging
        assert other_api.get(f"/api/cluster/jobs/{uuid}").json()["state"] == "running"
        assert set(staged) <= set((service_process.data_dir / "store").rglob("*.part"))
        job = api.wait_job(uuid, timeout=60)
        assert job["state"] == "success", job
        assert other_api.get(f"/api/cluster/jobs/{uuid}").json()["state"] == "success"
        other_api.session.close()
    finally:
        other.stop()
    copies = [p for p in (service_process.data_dir / "store").rglob("slow.tgz")]
    assert len(copies) == 2 and all(c.read_bytes() == pkg.read_bytes() for c in copies)
    api.session.close()


def _stores(root: Path, owner: str) -> list[LocalDirStore]:
    return [LocalDirStore(root / "a", "a", owner), LocalDirStore(root / "b", "b", owner)]


def test_clean_up_removes_own_leftovers_and_only_abandoned_staging_of_others(tmp_path):
    mine, theirs = _stores(tmp_path, "n1"), _stores(tmp_path, "n2")
    my_old = mine[0].begin()
    my_resumable = mine[0].begin()
    their_live = theirs[0].begin()
    for upload in (my_old, my_resumable, their_live):
        upload.write(b"x" * 100)
        upload.flush()
    now = time.time()
    keep = {my_resumable.handle}
    # at start-up: my own leftovers go (except what a job resumes), another live owner's stay
    assert mine[0].clean_staging(keep=keep, abandoned_before=now - 3600,
                                 own_leftovers=True) == 1
    assert mine[0].adopt(my_resumable.handle) is not None
    assert theirs[0].adopt(their_live.handle) is not None
    # a periodic sweep removes nobody's fresh uploads, not even its own
    assert mine[0].clean_staging(keep=(), abandoned_before=now - 3600,
                                 own_leftovers=False) == 0
    # once untouched for longer than the abandon limit, anyone's go
    assert mine[0].clean_staging(keep=(), abandoned_before=time.time() + 1,
                                 own_leftovers=False) == 2
    with pytest.raises(ValueError):
        theirs[0].adopt(their_live.handle)
    with pytest.raises(ValueError):
        mine[0].adopt("../../etc/passwd")


def test_a_fresh_unreferenced_blob_is_not_an_orphan_yet(tmp_path):
    """Between committing its blobs and recording them, another process's publish must not
    lose them to this process's clean-up."""
    db = Database(tmp_path / "db.sqlite")
    try:
        stores = _stores(tmp_path, "n1")
        upload = stores[0].begin()
        upload.write(b"blob")
        upload.commit("packages/x/late.tgz")
        fresh = Repository(SqlitePackageCatalog(db), stores, orphan_grace=600)
        assert fresh.recover() == {"staging_removed": 0, "orphans_removed": 0}
        assert stores[0].exists("packages/x/late.tgz")
        graceless = Repository(SqlitePackageCatalog(db), stores, orphan_grace=0)
        assert graceless.recover()["orphans_removed"] == 1
        assert not stores[0].exists("packages/x/late.tgz")
    finally:
        db.close()
