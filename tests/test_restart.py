"""A real ``swdepot serve`` process, killed with SIGKILL and started again."""

from __future__ import annotations

import signal
import time

from pkgfactory import make_package
from servers import Fault

DOWNLOAD = "/api/cluster/software/download"


def test_finished_job_and_package_survive_kill_and_restart(service_process, import_dir):
    make_package(import_dir, "keep.tgz", "9.15.1", size=256 * 1024)
    api = service_process.start()
    job = api.download("file:///keep.tgz")
    assert job["state"] == "success"
    before = api.get("/api/cluster/software/packages?fields=*").json()["records"]
    api.session.close()
    service_process.kill()

    api = service_process.start()
    assert api.get(f"/api/cluster/jobs/{job['uuid']}").json()["state"] == "success"
    assert api.get("/api/cluster/software/packages?fields=*").json()["records"] == before
    assert api.get(DOWNLOAD).json()["state"] == "success"
    api.session.close()


def test_kill_mid_transfer_leaves_no_partial_package(service_process, http_server_noauth,
                                                     content_dir):
    make_package(content_dir, "slow.tgz", "9.15.1", size=2 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=128 * 1024)
    api = service_process.start()
    started = api.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")})
    uuid = started.json()["job"]["uuid"]
    deadline = time.monotonic() + 20
    while api.get(DOWNLOAD).json().get("bytes_done", 0) < 100_000:
        assert time.monotonic() < deadline, "transfer made no progress"
        time.sleep(0.1)
    staging = list((service_process.data_dir / "store").rglob("*.part"))
    assert len(staging) == 2  # both node copies were being written
    api.session.close()
    service_process.kill()

    api = service_process.start()
    job = api.get(f"/api/cluster/jobs/{uuid}").json()
    assert job["state"] == "failure" and "restarted" in job["message"]
    assert api.get(DOWNLOAD).json()["state"] == "failure"
    assert api.get("/api/cluster/software/packages").json()["num_records"] == 0
    assert list((service_process.data_dir / "store").rglob("*.part")) == []
    # the slot is free again: a new download can start at once
    http_server_noauth.faults.clear()
    job = api.download(http_server_noauth.url("slow.tgz"))
    assert job["state"] == "success", job
    api.session.close()


def test_a_signal_stops_serve_at_once_while_clients_keep_connections_open(service_process):
    """SIGTERM with idle keep-alive TLS connections open: the service ends cleanly without
    sitting out its graceful-shutdown timeout (uvicorn logs when it had to)."""
    api = service_process.start()
    for path in ("/api/cluster", DOWNLOAD, DOWNLOAD):  # the last two the protocol answers
        assert api.get(path).status_code == 200  # the session keeps its connection open
    proc = service_process.proc
    assert proc is not None
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    # uvicorn ends by re-raising the signal it handled: the signal's own exit status
    assert proc.returncode == -signal.SIGTERM, err.decode()
    assert b"timeout graceful shutdown exceeded" not in err, err.decode()
    api.session.close()
