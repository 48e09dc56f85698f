"""A real ``swdepot serve`` process, killed with SIGKILL and started again."""

from __future__ import annotations

import hashlib
import signal

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


def test_a_download_killed_mid_transfer_is_taken_over_by_the_restarted_service(
        service_process, http_server_noauth, content_dir):
    pkg = make_package(content_dir, "slow.tgz", "9.15.1", size=2 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=512 * 1024)
    api = service_process.start()
    started = api.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")})
    uuid = started.json()["job"]["uuid"]
    api.wait_download_bytes(100_000)
    staging = list((service_process.data_dir / "store").rglob("*.part"))
    assert len(staging) == 2  # both node copies were being written
    api.session.close()
    service_process.kill()

    api = service_process.start()
    # the slot stays taken: the job goes on, nobody may start a second download
    refused = api.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "10551382"
    job = api.wait_job(uuid, timeout=60)
    assert job["state"] == "success", job
    assert api.get(DOWNLOAD).json()["state"] == "success"
    record = api.get("/api/cluster/software/packages/9.15.1?fields=sha256").json()
    assert record["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    assert list((service_process.data_dir / "store").rglob("*.part")) == []
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
