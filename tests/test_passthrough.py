"""ONTAP's CLI passthrough (``/api/private/cli/...``) for ``cluster image`` and ``cluster ha``,
with plain requests and with the unmodified clients that use it: netapp-ontap's
``CLI().execute`` and Ansible's ``na_ontap_rest_cli``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pkgfactory import make_package
from test_roles import as_user, viewer  # noqa: F401 - the fixture

CLI = "/api/private/cli/"
QUEUED = "Job is queued: Package download."
DOWNLOADED = "Package download completed.\nPackage processing completed.\n"
NODES = ["swdepot-01", "swdepot-02"]


def error(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.fixture
def image(content_dir, http_server_noauth):
    def make(version: str = "9.17.1") -> str:
        make_package(content_dir, f"{version}.tgz", version, size=4096)
        return http_server_noauth.url(f"{version}.tgz")
    return make


def test_show_gives_keys_unless_fields_are_asked_for(api):
    body = api.get(CLI + "cluster/image").json()
    assert body["records"] == [{"node": n} for n in NODES] and body["num_records"] == 2
    body = api.get(CLI + "cluster/image?fields=version&node=swdepot-02&privilege_level=admin")
    assert body.json()["records"] == [{"node": "swdepot-02", "version": "9.16.1"}]
    assert error(api.get(CLI + "cluster/image?fields=*")) == (400, "262220")
    assert error(api.get(CLI + "cluster/image?fields=current-version")) == (400, "262197")
    assert error(api.get(CLI + "cluster/image?privilege_level=root")) == (400, "262197")
    assert error(api.get(CLI + "cluster/image?colour=red")) == (400, "262179")
    assert api.get(CLI + "cluster/image?node=nosuch").json()["num_records"] == 0
    paged = api.get(CLI + "cluster/image?max_records=1").json()
    assert paged["num_records"] == 1 and "next" in paged["_links"]


def test_unknown_paths_methods_and_options(api):
    missing = api.get(CLI + "cluster/image/show-update-progress")  # verb kept: not ONTAP's path
    assert error(missing) == (404, "3") and missing.json()["error"]["message"] == "API not found"
    refused = api.post(CLI + "cluster/ha", json={})
    assert error(refused) == (405, "3") and "PATCH" in refused.headers["allow"]
    options = api.request("OPTIONS", CLI + "cluster/image/package/get")
    assert options.status_code == 200
    assert options.headers["allow"] == "OPTIONS, PATCH, POST"


def test_package_get_runs_as_a_job_and_show_repository_lists_it(api, image):
    response = api.post(CLI + "cluster/image/package/get", json={"url": image()})
    assert response.status_code == 202, response.text
    body = response.json()
    assert QUEUED in body["cli_output"] and body["job"]["_links"]["self"]["href"]
    assert api.wait_job(body["job"]["uuid"])["state"] == "success"

    records = api.get(CLI + "cluster/image/package/repository?fields=component-name,"
                      "component_version").json()["records"]
    assert records == [{"download_ver": "9.17.1", "component_name": ["ONTAP"],
                        "component_version": ["9.17.1"]}]
    progress = api.post(CLI + "cluster/image/package/check-download-progress").json()
    assert progress["records"] == [{"progress_status": "async_pkg_get_phase_complete",
                                    "progress_details": "Package download completed."}]

    # waiting for it: the CLI's own closing lines
    response = api.post(CLI + "cluster/image/package/get?return_timeout=30",
                        json={"url": image("9.18.1")})
    assert response.status_code == 200 and response.json()["cli_output"] == DOWNLOADED


def test_package_get_refusals(api, image, http_server_noauth):
    get = CLI + "cluster/image/package/get"
    assert error(api.post(get, json={})) == (400, "262212")
    assert error(api.post(get, json={"url": image(), "replace-package": True})) == (400,
                                                                                    "262179")
    assert error(api.post(get + "?url=x", json={})) == (400, "262211")
    assert error(api.post(get, json={"url": "gopher://127.0.0.1/x.tgz"}))[1] == "39387138"
    failed = api.post(get + "?return_timeout=30",
                      json={"url": http_server_noauth.url("nothing-here.tgz")})
    assert error(failed) == (400, "10551381")
    progress = api.post(CLI + "cluster/image/package/check-download-progress").json()
    record = progress["records"][0]
    assert record["progress_status"] == "async_pkg_get_phase_failed"
    assert record["failure_reason"] == record["progress_details"] != ""


def test_package_delete_by_version_query(api, image):
    delete = CLI + "cluster/image/package"
    assert error(api.delete(delete + "?version=9.17.1")) == (404, "10551315")  # empty
    for version in ("9.17.1", "9.18.1"):
        api.download(image(version))
    assert error(api.delete(delete + "?version=9.99.1")) == (404, "10551325")
    assert error(api.delete(delete)) == (400, "262212")
    assert api.delete(delete + "?version=8.*").json() == {"num_records": 0}

    body = api.delete(delete + "?version=9.1*").json()  # both, each its own job
    assert body["num_records"] == 2 and len(body["jobs"]) == 2
    assert body["cli_output"] == "Package Delete Operation Completed Successfully\n"
    assert api.get(CLI + "cluster/image/package/repository").json()["num_records"] == 0


@pytest.fixture
def fast(settings, start_service):
    return start_service(settings, update_step_seconds=0.3, update_minute_seconds=0.01).api


def test_validate_update_progress_pause_and_cancel(fast, image):
    api = fast
    api.download(image())
    response = api.post(CLI + "cluster/image/validate?return_timeout=30",
                        json={"version": "9.17.1", "nodes": ["swdepot-01"]})
    assert response.status_code == 200, response.text
    table = response.json()["cli_output"]
    assert "Package signature" in table and "Overall Status                 Warning" in table

    estimate = api.post(CLI + "cluster/image/update", json={"version": "9.17.1",
                                                             "estimate-only": "true"})
    assert "do-takeover-reboot-giveback" in estimate.json()["cli_output"]
    assert api.get("/api/cluster/software").json()["state"] == "completed"  # nothing started

    started = api.post(CLI + "cluster/image/update", json={
        "version": "9.17.1", "ignore-validation-warning": True, "stabilize-minutes": 1})
    assert started.status_code == 200 and started.json()["cli_output"] == "Starting update...\n"
    cancel = api.post(CLI + "cluster/image/cancel-update")
    assert error(cancel) == (400, "262185") and "paused" in cancel.json()["error"]["message"]
    paused = api.post(CLI + "cluster/image/pause-update")
    assert paused.status_code == 200 and paused.json()["cli_output"].startswith(
        "Info: Pausing update.")
    api.wait_software("paused_by_user")
    phases = api.get(CLI + "cluster/image/update-progress?fields=phase-status,"
                     "estimated-duration,elapsed-duration").json()["records"]
    states = {p["ndu_phase"]: p["phase_status"] for p in phases}
    assert states["validation"] == "completed" or "paused_by_user" in states.values()
    assert "paused_by_user" in states.values()
    assert all(p["estimated_duration"].startswith("PT") for p in phases)
    cancel = api.post(CLI + "cluster/image/cancel-update")
    assert cancel.status_code == 200, cancel.text
    assert api.wait_software("canceled")["state"] == "canceled"


def test_update_runs_to_completion_through_the_cli(fast, image):
    api = fast
    api.download(image())
    started = api.patch(CLI + "cluster/image/update?version=9.17.1"
                        "&ignore_validation_warning=true")  # an action verb sent as PATCH
    assert started.status_code == 200, started.text
    api.wait_software("completed")
    assert api.get(CLI + "cluster/image?fields=version,date").json()["records"][0][
        "version"] == "9.17.1"
    phases = api.get(CLI + "cluster/image/update-progress?fields=phase_status").json()
    assert [p["phase_status"] for p in phases["records"]] == ["completed"] * 3


def test_cluster_ha_show_and_modify(api):
    def configured() -> bool:
        return api.get(CLI + "cluster/ha?fields=configured").json()["records"][0]["configured"]

    assert configured() is True  # a two-node cluster, as ONTAP's setup leaves it
    assert api.get(CLI + "cluster/ha").json()["records"] == [{}]  # no key fields
    response = api.patch(CLI + "cluster/ha", json={"configured": False})
    assert response.json() == {"num_records": 1} and configured() is False
    response = api.patch(CLI + "cluster/ha?configured=true", json={"configured": True})
    assert response.json() == {"num_records": 0} and configured() is False  # no match
    assert error(api.patch(CLI + "cluster/ha", json={})) == (400, "262190")
    assert error(api.patch(CLI + "cluster/ha", json={"configured": "maybe"})) == (400,
                                                                                   "262197")
    response = api.patch(CLI + "cluster/ha?privilege_level=admin", json={"configured": "true"})
    assert response.json() == {"num_records": 1} and configured() is True


def cluster_of(settings, *nodes: str):
    return replace(settings, cluster=replace(settings.cluster, nodes=nodes))


def test_single_node_refuses(settings, start_service):
    one = start_service(cluster_of(settings, "solo")).api
    assert one.get(CLI + "cluster/ha?fields=configured").json()["records"] == [
        {"configured": False}]
    assert error(one.patch(CLI + "cluster/ha", json={"configured": True})) == (400, "262185")


def test_large_cluster_warns(settings, start_service):
    four = start_service(cluster_of(settings, "n1", "n2", "n3", "n4")).api
    response = four.patch(CLI + "cluster/ha", json={"configured": True}).json()
    assert response["num_records"] == 1 and "two-node" in response["cli_output"]


def test_read_only_user_reads_but_runs_nothing(swdepot, viewer):  # noqa: F811
    session = as_user(swdepot, viewer)
    base = swdepot.api.base + CLI
    assert session.get(base + "cluster/image/package/repository").status_code == 200
    assert session.post(base + "cluster/image/package/check-download-progress").status_code \
        == 200
    for method, path in (("POST", "cluster/image/package/get"), ("PATCH", "cluster/ha"),
                         ("DELETE", "cluster/image/package?version=9.17.1"),
                         ("POST", "cluster/image/pause-update")):
        assert session.request(method, base + path, json={}).status_code == 403, path


# --- the real clients --------------------------------------------------------------------


def test_netapp_ontap_cli_execute(ontap, api, image):
    from netapp_ontap.resources import CLI as OntapCli

    response = OntapCli().execute("cluster image package get", body={"url": image()})
    assert response.http_response.json()["state"] == "success"  # polled the job to its end
    shown = OntapCli().execute("cluster image package show-repository")
    assert shown.http_response.json()["records"] == [{"download_ver": "9.17.1"}]
    nodes = OntapCli().execute("cluster image show", fields="version")
    assert {r["node"]: r["version"] for r in nodes.http_response.json()["records"]} == {
        n: "9.16.1" for n in NODES}
    # NetApp's ndu_upgrade.py, before it updates a multi-node cluster
    OntapCli().execute("cluster ha modify", body={"configured": "true"})
    deleted = OntapCli().execute("cluster image package delete", version="9.17.1")
    assert deleted.http_response.json()["num_records"] == 1
    assert api.get("/api/cluster/software/packages").json()["num_records"] == 0


def test_ansible_rest_cli(ansible_module, image):
    def cli(**args):
        return ansible_module("na_ontap_rest_cli", **args)

    got = cli(command="cluster/image/package/get", verb="POST", body={"url": image()},
              params={"return_timeout": 30})
    assert got["changed"] is True and got["msg"]["cli_output"] == DOWNLOADED, got
    shown = cli(command="cluster/image", verb="GET", params={"fields": "version"})
    assert shown["msg"]["num_records"] == 2 and shown["changed"] is False
    ha = cli(command="cluster/ha", verb="PATCH", body={"configured": False})
    assert ha["msg"] == {"num_records": 1}, ha
    failed = cli(command="cluster/image/package", verb="DELETE",
                 params={"version": "9.99.1"})
    assert failed["failed"] is True and "10551325" in failed["msg"]
