"""Packages, jobs, cluster and the generic ONTAP conventions, end to end over HTTPS."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import requests

from pkgfactory import make_package

PACKAGES = "/api/cluster/software/packages"


def load(api, content_dir, http_server_noauth, *versions: str) -> None:
    for version in versions:
        name = f"pkg-{version}.tgz"
        make_package(content_dir, name, version, size=4096)
        job = api.download(http_server_noauth.url(name))
        assert job["state"] == "success", job


# --- auth ----------------------------------------------------------------------------------

def test_missing_or_wrong_credentials_are_401(swdepot):
    base = swdepot.api.base
    verify = str(swdepot.cert)
    with requests.Session() as s:
        s.trust_env = False
        anonymous = s.get(base + "/api/cluster", verify=verify)
        wrong = s.get(base + "/api/cluster", auth=("admin", "nope"), verify=verify)
    for response in (anonymous, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")
        assert response.json()["error"]["message"]


def test_basic_header_with_trailing_space_is_accepted(swdepot):
    import base64

    token = base64.b64encode(b"admin:admin-secret").decode()
    with requests.Session() as s:
        s.trust_env = False
        response = s.get(swdepot.api.base + "/api/cluster", verify=str(swdepot.cert),
                         headers={"Authorization": f"Basic {token} "})
    assert response.status_code == 200


# --- cluster ---------------------------------------------------------------------------------

def test_cluster_and_software(api):
    cluster = api.get("/api/cluster?fields=version").json()
    assert cluster["version"]["generation"] == 9
    assert (cluster["version"]["major"], cluster["version"]["minor"]) == (16, 1)
    assert "9.16.1" in cluster["version"]["full"]
    software = api.get("/api/cluster/software?fields=nodes").json()
    assert [n["name"] for n in software["nodes"]] == ["swdepot-01", "swdepot-02"]
    assert all(n["version"] == "9.16.1" for n in software["nodes"])
    full = api.get("/api/cluster/software").json()
    assert full["version"] == "9.16.1" and full["state"] == "completed"


def test_unknown_api_and_method(api):
    missing = api.get("/api/cluster/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "3"
    wrong_method = api.request("PUT", PACKAGES)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "3"


# --- packages ----------------------------------------------------------------------------

def test_packages_collection_conventions(api, content_dir, http_server_noauth):
    load(api, content_dir, http_server_noauth, "9.12.1", "9.13.1", "9.14.1")
    plain = api.get(PACKAGES).json()
    assert plain["num_records"] == 3
    assert set(plain["records"][0]) == {"version", "_links"}  # keys + links by default
    assert plain["records"][0]["_links"]["self"]["href"].startswith(PACKAGES + "/9.")
    star = api.get(PACKAGES + "?fields=*").json()["records"][0]
    assert {"version", "create_time", "sha256", "size"} <= set(star)
    empty_fields = api.get(PACKAGES + "?fields=").json()
    assert empty_fields["num_records"] == 3
    assert api.get(PACKAGES + "?version=9.13.1").json()["records"] == [
        {"version": "9.13.1", "_links": {"self": {"href": PACKAGES + "/9.13.1"}}}]
    assert api.get(PACKAGES + "?version=9.1*&return_records=false").json()["num_records"] == 3
    newest = api.get(PACKAGES + "?order_by=version%20desc&max_records=1").json()
    assert newest["records"][0]["version"] == "9.14.1"
    assert newest["num_records"] == 1
    # follow next links like netapp-ontap does: every record exactly once
    seen: list[str] = []
    href = PACKAGES + "?max_records=2&order_by=version"
    while href:
        page = api.get(href).json()
        seen += [r["version"] for r in page["records"]]
        href = page["_links"].get("next", {}).get("href")
    assert seen == ["9.12.1", "9.13.1", "9.14.1"]
    bad = api.get(PACKAGES + "?colour=red")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "262179"
    bad_field = api.get(PACKAGES + "?fields=nonsense")
    assert bad_field.status_code == 400 and bad_field.json()["error"]["code"] == "262197"


def test_number_filters_are_checked_even_on_an_empty_collection(api):
    for path in (PACKAGES + "?size=abc", PACKAGES + "?size=1..x", "/api/cluster/jobs?code=<x"):
        response = api.get(path)
        assert response.status_code == 400, path
        assert response.json()["error"]["code"] == "262197", path
    assert api.get(PACKAGES + "?size=>100|null").status_code == 200
    assert api.get(PACKAGES + "?size=1*").status_code == 200  # wildcards match the text


def test_accept_json_omits_hal_links(api, content_dir, http_server_noauth):
    load(api, content_dir, http_server_noauth, "9.12.1")
    hal = api.get(PACKAGES)
    assert hal.headers["content-type"].startswith("application/hal+json")
    plain = api.get(PACKAGES, headers={"accept": "application/json"})
    assert plain.headers["content-type"].startswith("application/json")
    assert "_links" not in plain.json()["records"][0]


def test_get_unknown_package_is_404(api):
    response = api.get(PACKAGES + "/9.99.1")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "entry doesn't exist", "code": "4",
                                         "target": "version"}}


def test_delete_package(api, swdepot, content_dir, http_server_noauth):
    empty = api.delete(PACKAGES + "/9.12.1")
    assert empty.status_code == 404 and empty.json()["error"]["code"] == "10551315"
    load(api, content_dir, http_server_noauth, "9.12.1", "9.13.1")
    missing = api.delete(PACKAGES + "/9.99.1")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "10551325"
    response = api.delete(PACKAGES + "/9.12.1", json={})  # netapp-ontap sends {}
    assert response.status_code == 202
    job = api.wait_job(response.json()["job"]["uuid"])
    assert job["state"] == "success"
    assert job["description"] == "DELETE /api/cluster/software/packages/9.12.1"
    assert [r["version"] for r in api.get(PACKAGES).json()["records"]] == ["9.13.1"]
    files = [p.name for root in swdepot.settings.store_roots for p in root.rglob("*.tgz")]
    assert files == ["pkg-9.13.1.tgz", "pkg-9.13.1.tgz"]
    waited = api.delete(PACKAGES + "/9.13.1?return_timeout=30")
    assert waited.status_code == 200 and "job" in waited.json()
    assert api.get(PACKAGES).json()["num_records"] == 0


def test_package_of_the_running_version_can_be_deleted(api, content_dir, http_server_noauth):
    """Ansible's full update deletes the package once the cluster runs it (clients.md I.5)."""
    load(api, content_dir, http_server_noauth, "9.16.1")
    assert api.wait_job(api.delete(PACKAGES + "/9.16.1").json()["job"]["uuid"])["state"] == \
        "success"


# --- jobs --------------------------------------------------------------------------------

def test_jobs_collection_and_unknown_job(api, content_dir, http_server_noauth):
    load(api, content_dir, http_server_noauth, "9.12.1")
    jobs = api.get("/api/cluster/jobs").json()
    assert jobs["num_records"] == 1 and set(jobs["records"][0]) == {"uuid", "_links"}
    failed = api.get("/api/cluster/jobs?state=failure").json()
    assert failed["num_records"] == 0
    one = api.get("/api/cluster/jobs?fields=state,message").json()["records"][0]
    assert one["state"] == "success" and one["message"] == "success" and "code" not in one
    missing = api.get("/api/cluster/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"message": "entry doesn't exist", "code": "4",
                                       "target": "uuid"}


def test_finished_jobs_expire(settings, start_service, content_dir, http_server_noauth):
    svc = start_service(settings, job_retention_seconds=1.0)
    make_package(content_dir, "p.tgz", "9.12.1", size=4096)
    job = svc.api.download(http_server_noauth.url("p.tgz"))
    uuid = job["uuid"]
    deadline = time.monotonic() + 10
    while svc.api.get(f"/api/cluster/jobs/{uuid}").status_code != 404:
        assert time.monotonic() < deadline, "job never expired"
        time.sleep(0.1)
    # the download status survives its job
    assert svc.api.get("/api/cluster/software/download").json()["state"] == "success"


def test_failed_job_carries_error_object(api, http_server_noauth):
    job = api.download(http_server_noauth.url("absent.tgz"))
    assert job["state"] == "failure"
    assert job["error"] == {"code": "10551381", "message": job["message"]}
    assert isinstance(job["code"], int)
    assert urlsplit(job["_links"]["self"]["href"]).path == f"/api/cluster/jobs/{job['uuid']}"
