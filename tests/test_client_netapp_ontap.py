"""NetApp's ``netapp-ontap`` library, unmodified, against a real swdepot over HTTPS.

Each test uses the library the way its documentation and NetApp's own example scripts
do (clients.md §1); nothing in the library is patched.
"""

from __future__ import annotations

import pytest
from netapp_ontap.error import NetAppRestError
from netapp_ontap.resources import (
    Cluster,
    Job,
    Software,
    SoftwarePackage,
    SoftwarePackageDownload,
)

from pkgfactory import make_package


def _download(url: str):
    """``post()`` polls the job until it ends and returns the last job read."""
    return SoftwarePackageDownload(url=url).post(poll_interval=0.2, poll_timeout=30)


def test_download_polls_job_to_success_and_status_reads(ontap, http_server_noauth, content_dir):
    make_package(content_dir, "9.17.1_q_image.tgz", "9.17.1", size=8192)
    response = _download(http_server_noauth.url("9.17.1_q_image.tgz"))
    job = response.http_response.json()
    assert job["state"] == "success" and job["message"] == "success"

    status = SoftwarePackageDownload()
    status.get()
    assert status.state == "success" and status.code == 0
    status.get(fields="state,message,code")
    assert status.state == "success"

    read = Job(uuid=job["uuid"])
    read.get()
    assert read.state == "success" and read.description == "POST /api/cluster/software/download"
    assert any(j.uuid == job["uuid"] for j in Job.get_collection(max_records=10))


def test_download_with_server_credentials_in_body(ontap, http_server, content_dir):
    make_package(content_dir, "auth.tgz", "9.15.1", size=4096)
    SoftwarePackageDownload(url=http_server.url("auth.tgz"), username=http_server.username,
                            password=http_server.password).post(poll_interval=0.2)
    assert SoftwarePackage.find(version="9.15.1") is not None


def test_packages_collection_find_count_get_and_delete(ontap, http_server_noauth, content_dir):
    for version in ("9.14.1", "9.15.1", "9.16.1P2"):
        make_package(content_dir, f"{version}.tgz", version, size=4096)
        _download(http_server_noauth.url(f"{version}.tgz"))

    versions = [p.version for p in SoftwarePackage.get_collection()]
    assert sorted(versions) == ["9.14.1", "9.15.1", "9.16.1P2"]
    detailed = list(SoftwarePackage.get_collection(fields="version,create_time",
                                                   return_timeout=15))
    assert all(p.create_time is not None for p in detailed)
    # the library follows _links.next until the collection is exhausted
    assert sorted(p.version for p in SoftwarePackage.get_collection(max_records=1)) == \
        sorted(versions)
    assert SoftwarePackage.count_collection() == 3
    found = SoftwarePackage.find(version="9.15.1")
    assert found.version == "9.15.1" and found.create_time is not None
    assert SoftwarePackage.find(version="9.99.9") is None

    one = SoftwarePackage(version="9.16.1P2")
    one.get()
    assert one.create_time is not None

    SoftwarePackage(version="9.14.1").delete(poll_interval=0.2)
    SoftwarePackage(version="9.15.1").delete(return_timeout=15, poll_interval=0.2)
    assert [p.version for p in SoftwarePackage.get_collection()] == ["9.16.1P2"]


def test_unknown_package_is_404(ontap):
    with pytest.raises(NetAppRestError) as info:
        SoftwarePackage(version="9.99.1").get()
    assert info.value.status_code == 404
    assert info.value.response_body["error"]["code"] == "4"
    with pytest.raises(NetAppRestError) as info:
        SoftwarePackage(version="9.99.1").delete(poll_interval=0.2)
    assert info.value.status_code == 404


def test_duplicate_download_raises_with_ontap_code(ontap, http_server_noauth, content_dir):
    make_package(content_dir, "dup.tgz", "9.13.1", size=4096)
    _download(http_server_noauth.url("dup.tgz"))
    with pytest.raises(NetAppRestError) as info:
        _download(http_server_noauth.url("dup.tgz"))
    assert info.value.response_body["error"]["code"] == "10551327"
    assert "Package image with the same name already exists" in str(info.value)


def test_failed_download_job_raises_job_failed(ontap, http_server_noauth):
    with pytest.raises(NetAppRestError) as info:
        _download(http_server_noauth.url("missing.tgz"))
    assert "Job failed: Package download failed" in str(info.value)


def test_download_without_polling_then_poll(ontap, http_server_noauth, content_dir):
    make_package(content_dir, "later.tgz", "9.12.1", size=4096)
    response = SoftwarePackageDownload(url=http_server_noauth.url("later.tgz")).post(
        poll=False, return_timeout=0)
    assert response.is_job
    final = response.poll(interval=0.2, timeout=30)
    assert final.http_response.json()["state"] == "success"


def test_cluster_and_software_profile(ontap):
    cluster = Cluster()
    cluster.get(fields="version")
    assert cluster.version.generation == 9
    cluster.get(fields="timezone")
    assert cluster.timezone.name == "Etc/UTC"
    software = Software()
    software.get()
    assert software.version and [n.name for n in software.nodes] == ["swdepot-01",
                                                                    "swdepot-02"]
    assert [n.model for n in software.nodes] == ["swdepot", "swdepot"]
