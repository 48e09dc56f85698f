"""Jobs that outlive their process, across real ``swdepot serve`` processes."""

from __future__ import annotations

import time

from pkgfactory import make_package
from servers import Fault
from service import ServiceProcess, free_port

DOWNLOAD = "/api/cluster/software/download"


def test_a_cancel_sent_to_one_process_stops_the_download_another_runs(
        service_process, http_server_noauth, content_dir, import_dir):
    make_package(content_dir, "slow.tgz", "9.15.1", size=4 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=256 * 1024)
    runs = service_process.start()
    other = ServiceProcess(service_process.data_dir, import_dir, free_port())
    try:
        asks = other.start(args=("--node-name", "swdepot-02"))
        uuid = runs.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")}
                         ).json()["job"]["uuid"]
        deadline = time.monotonic() + 20
        while runs.get(DOWNLOAD).json().get("bytes_done", 0) < 100_000:
            assert time.monotonic() < deadline, "transfer made no progress"
            time.sleep(0.05)
        assert asks.get(f"/api/cluster/jobs/{uuid}").json()["node"]["name"] == "swdepot-01"
        sent = time.monotonic()
        answer = asks.patch(f"/api/cluster/jobs/{uuid}?action=cancel")
        assert answer.status_code == 200, answer.text
        job = asks.wait_job(uuid)
        assert time.monotonic() - sent < 2.0  # within a second, plus the polls' own time
        assert job["state"] == "failure" and "canceled" in job["message"], job
        assert list((service_process.data_dir / "store").rglob("*.part")) == []
        assert runs.get("/api/cluster/software/packages").json()["num_records"] == 0
        again = asks.patch(f"/api/cluster/jobs/{uuid}?action=cancel")
        assert again.json()["error"]["code"] == "458762"  # terminal: nothing to cancel
        asks.session.close()
    finally:
        other.stop()
        runs.session.close()
