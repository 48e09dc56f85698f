"""PATCH /api/cluster/jobs/{uuid}?action=cancel|pause|resume."""

from __future__ import annotations

import time

from netapp_ontap.resources import Job

from pkgfactory import make_package
from servers import Fault

DOWNLOAD = "/api/cluster/software/download"


def start_slow_download(api, server, content_dir) -> str:
    make_package(content_dir, "slow.tgz", "9.17.1", size=2 << 20)
    server.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=64 * 1024)
    response = api.post(DOWNLOAD, json={"url": server.url("slow.tgz")})
    uuid = response.json()["job"]["uuid"]
    deadline = time.monotonic() + 30
    while api.get(DOWNLOAD).json().get("bytes_done", 0) == 0:
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    return uuid


def test_cancel_stops_the_download_and_removes_partial_data(api, swdepot, http_server_noauth,
                                                            content_dir):
    uuid = start_slow_download(api, http_server_noauth, content_dir)
    assert api.patch(f"/api/cluster/jobs/{uuid}?action=pause").json()["error"]["code"] == \
        "458783"
    assert api.patch(f"/api/cluster/jobs/{uuid}?action=resume").json()["error"]["code"] == \
        "458776"
    response = api.patch(f"/api/cluster/jobs/{uuid}?action=cancel")
    assert response.status_code == 200 and response.json() == {}
    job = api.wait_job(uuid)
    assert job["state"] == "failure" and job["code"] == 10551381
    assert "canceled" in job["message"]
    staged = [p for root in swdepot.settings.store_roots
              for p in (root / ".staging").rglob("*.part")]
    assert staged == []
    assert api.get("/api/cluster/software/packages").json()["num_records"] == 0
    again = api.patch(f"/api/cluster/jobs/{uuid}?action=cancel")
    assert again.status_code == 400 and again.json()["error"]["code"] == "458762"
    # the slot is free again
    http_server_noauth.faults.clear()
    assert api.download(http_server_noauth.url("slow.tgz"))["state"] == "success"


def test_job_action_errors(api, content_dir, http_server_noauth):
    make_package(content_dir, "p.tgz", "9.12.1", size=4096)
    done = api.download(http_server_noauth.url("p.tgz"))
    uuid = done["uuid"]
    assert api.patch("/api/cluster/jobs/00000000-0000-0000-0000-000000000000?action=cancel"
                     ).status_code == 404
    assert api.patch(f"/api/cluster/jobs/{uuid}").json()["error"]["code"] == "262212"
    assert api.patch(f"/api/cluster/jobs/{uuid}?action=stop").json()["error"]["code"] == \
        "262197"
    assert api.patch(f"/api/cluster/jobs/{uuid}?action=cancel").json()["error"]["code"] == \
        "458762"


def test_netapp_ontap_job_cancel(ontap, api, http_server_noauth, content_dir):
    uuid = start_slow_download(api, http_server_noauth, content_dir)
    Job(uuid=uuid).patch(action="cancel", poll=False)
    assert api.wait_job(uuid)["state"] == "failure"
