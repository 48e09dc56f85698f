"""Ansible's ``netapp.ontap`` modules, unmodified, against a real swdepot over HTTPS.

The modules run as a playbook task would run them (``python -m`` with the task's options
as JSON, see ``tests/clients.py``), with ``validate_certs: false, use_rest: always``.
Their poll intervals are fixed by the modules themselves (job polls every 5 s with
``timeout: 30``; the update loop sleeps 60 s), which sets the pace of these tests.
"""

from __future__ import annotations

import pytest

from pkgfactory import make_package

VERSION = "9.17.1"
IMAGE = "9171_q_image.tgz"


def listed(api) -> list[str]:
    return [r["version"] for r in api.get("/api/cluster/software/packages").json()["records"]]


def software_update(ansible_module, **args):
    return ansible_module("na_ontap_software_update", timeout=30, **args)


def test_download_only_then_idempotent_rerun(ansible_module, api, http_server_noauth,
                                             content_dir):
    make_package(content_dir, IMAGE, VERSION, size=8192)
    task = {"package_version": VERSION, "package_url": http_server_noauth.url(IMAGE),
            "download_only": True}
    first = software_update(ansible_module, **task)
    assert first["changed"] is True and "failed" not in first, first
    assert listed(api) == [VERSION]

    again = software_update(ansible_module, **task)
    assert again["changed"] is False and "failed" not in again, again
    assert "already present" in str(again.get("warnings")), again["warnings"]
    downloads = [r for r in http_server_noauth.requests if r.method == "GET"]
    assert len(downloads) == 1  # the re-run did not fetch anything


def test_same_file_name_other_version_fails_clearly(ansible_module, api, http_server_noauth,
                                                    content_dir):
    make_package(content_dir, IMAGE, VERSION, size=4096)
    api.download(http_server_noauth.url(IMAGE))
    result = software_update(ansible_module, package_version="9.18.1", download_only=True,
                             force_update=True, package_url=http_server_noauth.url(IMAGE))
    assert result["failed"] is True
    assert "another package with the same file name exists: found: 9.17.1" in result["msg"]


def test_failed_download_reports_job_error(ansible_module, http_server_noauth):
    result = software_update(ansible_module, package_version=VERSION, download_only=True,
                             package_url=http_server_noauth.url("nothing-here.tgz"))
    assert result["failed"] is True
    assert "Error downloading software" in result["msg"]
    assert "Package download failed" in result["msg"]


def test_state_absent_deletes_and_is_idempotent(ansible_module, api, http_server_noauth,
                                                content_dir):
    make_package(content_dir, IMAGE, VERSION, size=4096)
    api.download(http_server_noauth.url(IMAGE))
    removed = software_update(ansible_module, package_version=VERSION, state="absent")
    assert removed["changed"] is True and "failed" not in removed, removed
    assert listed(api) == []
    again = software_update(ansible_module, package_version=VERSION, state="absent")
    assert again["changed"] is False


def test_firmware_upgrade_downloads_over_rest(ansible_module, api, http_server, content_dir):
    (content_dir / "X423_HCOBE900A10.LOD").write_bytes(b"disk firmware image " * 512)
    result = ansible_module(
        "na_ontap_firmware_upgrade", package_url=http_server.url("X423_HCOBE900A10.LOD"),
        server_username=http_server.username, server_password=http_server.password)
    assert result["changed"] is True and "failed" not in result, result
    assert result["msg"]["job_response"] == "success"
    status = api.get("/api/cluster/software/download").json()
    assert status["state"] == "success"
    # firmware is stored but is not an ONTAP image version
    assert listed(api) == []


def test_firmware_download_failure_is_reported(ansible_module, http_server):
    result = ansible_module("na_ontap_firmware_upgrade",
                            package_url=http_server.url("missing.LOD"),
                            server_username=http_server.username,
                            server_password="wrong")
    assert result["failed"] is True
    assert "Error downloading software" in result["msg"]


@pytest.mark.parametrize("fields", [None, ["*"]])
def test_rest_info_gathers_packages_and_download(ansible_module, api, http_server_noauth,
                                                 content_dir, fields):
    make_package(content_dir, IMAGE, VERSION, size=4096)
    api.download(http_server_noauth.url(IMAGE))
    args = {"gather_subset": ["cluster/software/packages", "cluster/software/download"]}
    if fields:
        args["fields"] = fields
    result = ansible_module("na_ontap_rest_info", **args)
    assert "failed" not in result, result
    info = result["ontap_info"]
    packages = info["cluster/software/packages"]
    assert packages["num_records"] == 1
    if fields:
        assert packages["records"][0]["version"] == VERSION
    assert info["cluster/software/download"]["state"] == "success"


def test_rest_info_pages_through_next_links(ansible_module, api, http_server_noauth,
                                            content_dir):
    for version in ("9.14.1", "9.15.1", "9.16.1P2"):
        make_package(content_dir, f"{version}.tgz", version, size=4096)
        api.download(http_server_noauth.url(f"{version}.tgz"))
    result = ansible_module("na_ontap_rest_info", gather_subset=["cluster/software/packages"],
                            max_records=1, fields=["version"])
    assert "failed" not in result, result
    records = result["ontap_info"]["cluster/software/packages"]["records"]
    assert sorted(r["version"] for r in records) == ["9.14.1", "9.15.1", "9.16.1P2"]


@pytest.mark.timeout(300)
def test_full_update_with_validation_after_download(ansible_module, api, http_server_noauth,
                                                    content_dir):
    """Download, validate, update every node, then delete the package (clients.md G and I).

    The module sleeps 10 s before reading validation results and 60 s before its first
    look at the update state; those sleeps are most of this test's run time.
    """
    make_package(content_dir, IMAGE, VERSION, size=8192)
    result = software_update(ansible_module, package_version=VERSION,
                             package_url=http_server_noauth.url(IMAGE),
                             validate_after_download=True, ignore_validation_warning=True,
                             stabilize_minutes=1, deadline=280)
    assert result["changed"] is True and "failed" not in result, result
    after_download = result["validation_reports_after_download"]
    assert [r["update_check"] for r in after_download] == ["Package signature"]
    # (the module's REST path never fills validation_reports_after_update)
    nodes = api.get("/api/cluster/software?fields=nodes,state").json()
    assert nodes["state"] == "completed"
    assert {n["version"] for n in nodes["nodes"]} == {VERSION}
    assert listed(api) == []  # the module deletes the package after a completed update
