"""GET/PATCH /api/cluster/software: validation, the rolling update, pause/resume/cancel."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from pkgfactory import make_package
from swdepot.software.profile import phase_progress, step_progress
from swdepot.software.update import Pace, Update, UpdateState, plan

SOFTWARE = "/api/cluster/software"
NODES = ["swdepot-01", "swdepot-02"]


@pytest.fixture
def loaded(api, content_dir, http_server_noauth):
    """A repository holding 9.17.1 (unsigned) for a cluster running 9.16.1."""
    def load(version: str = "9.17.1") -> str:
        name = f"{version}.tgz"
        make_package(content_dir, name, version, size=4096)
        assert api.download(http_server_noauth.url(name))["state"] == "success"
        return version
    return load


def patch(api, query: str = "", **body):
    response = api.patch(SOFTWARE + query, json=body)
    assert response.status_code == 202, response.text
    return api.wait_job(response.json()["job"]["uuid"])


def node_versions(api) -> dict[str, str]:
    return {n["name"]: n["version"] for n in api.get(SOFTWARE).json()["nodes"]}


def test_validate_only_fills_validation_results(api, loaded):
    loaded()
    assert "validation_results" not in api.get(SOFTWARE).json()
    job = patch(api, "?validate_only=true", version="9.17.1")
    assert job["state"] == "success" and job["description"] == "PATCH /api/cluster/software"
    results = api.get(SOFTWARE + "?fields=validation_results").json()["validation_results"]
    assert [(r["update_check"], r["status"]) for r in results] == [("Package signature",
                                                                    "warning")]
    assert results[0]["issue"]["message"] and results[0]["action"]["message"]
    after = api.get(SOFTWARE).json()
    assert after["state"] == "completed"  # nothing was started
    # the durations are the validation's: the time its checks took, and the time planned
    assert isinstance(after["elapsed_duration"], int) and after["elapsed_duration"] >= 0
    assert isinstance(after["estimated_duration"], int)
    assert "update_details" not in after and "status_details" not in after


def test_refusals_before_any_job(api, loaded):
    def error(query: str = "", **body) -> tuple[int, str]:
        response = api.patch(SOFTWARE + query, json=body)
        return response.status_code, response.json()["error"]["code"]

    assert error(version="9.17.1") == (404, "10551315")  # empty repository
    loaded()
    assert error() == (400, "10551872")
    assert error(version="9.99.1") == (404, "10551325")
    assert error("?skip_warnings=maybe", version="9.17.1")[1] == "262197"
    assert error("?stabilize_minutes=0", version="9.17.1")[1] == "262197"
    assert error("?nodes_to_update=nosuchnode", version="9.17.1")[1] == "262185"
    assert error("?action=pause")[1] == "262185"  # no update to pause
    assert error("?action=explode")[1] == "262197"
    assert error(state="completed", version="9.17.1")[1] == "262196"


def test_full_update_moves_every_node_and_the_cluster_version(api, loaded, http_server_noauth,
                                                             content_dir):
    loaded()
    job = patch(api, "?skip_warnings=True", version="9.17.1")  # Python-style boolean
    assert job["state"] == "success"
    running = api.get(SOFTWARE).json()
    if running["state"] == "in_progress":
        assert running["pending_version"] == "9.17.1"
    done = api.wait_software("completed", "failed", "paused_on_error")
    assert done["state"] == "completed", done
    assert "pending_version" not in done
    assert node_versions(api) == {n: "9.17.1" for n in NODES}
    assert api.get("/api/cluster?fields=version").json()["version"]["major"] == 17
    phases = {(d["phase"], d["node"]["name"], d["state"]) for d in done["update_details"]}
    assert ("Data ONTAP updates", "swdepot-02", "completed") in phases
    assert ("Pre-update checks", "swdepot-01", "completed") in phases
    names = [s["name"] for s in done["status_details"]]
    assert names.count("do-download-job") == 2 and names[-1] == "post-update-checks"
    assert all(s["state"] == "completed" for s in done["status_details"])
    # informational issues are code 0; the last one is ONTAP's "Image update complete"
    issues = [s["issue"] for s in done["status_details"]]
    assert issues[-1] == {"code": 10551399, "message": "Image update complete"}
    assert all(i["code"] == 0 for i in issues[:-1])
    assert not any("action" in s for s in done["status_details"])
    assert "post_update_checks" not in done
    assert [n["model"] for n in done["nodes"]] == ["swdepot", "swdepot"]
    # the package of the version now running may be deleted (Ansible does that next)
    response = api.delete("/api/cluster/software/packages/9.17.1")
    assert api.wait_job(response.json()["job"]["uuid"])["state"] == "success"
    # and the same version again is refused: every node already runs it
    loaded()
    response = api.patch(SOFTWARE, json={"version": "9.17.1"})
    assert response.json()["error"]["code"] == "10551897"


def test_warnings_pause_on_error_until_resumed(api, loaded):
    loaded()
    patch(api, version="9.17.1")
    paused = api.wait_software("paused_on_error", "completed")
    assert paused["state"] == "paused_on_error"
    assert paused["validation_results"][0]["update_check"] == "Package signature"
    # the step the update waits at shows the update's state, with the problem and the way on
    held = [s for s in paused["status_details"] if s["state"] == "paused_on_error"]
    assert [s["name"] for s in held] == ["initialize"]
    assert "warnings" in held[0]["issue"]["message"]
    assert held[0]["issue"]["code"] == held[0]["action"]["code"] == 10551359
    assert "action=resume" in held[0]["action"]["message"]
    assert [d["state"] for d in paused["update_details"]
            if d["phase"] == "Pre-update checks"] == ["paused_on_error"]
    assert node_versions(api) == {n: "9.16.1" for n in NODES}
    patch(api, "?action=resume", version="9.17.1")
    assert api.wait_software("completed", "paused_on_error", "failed")["state"] == "completed"


def test_update_blocks_downloads_and_deleting_its_package(settings, start_service,
                                                          http_server_noauth, content_dir):
    svc = start_service(settings, update_step_seconds=0.5, update_minute_seconds=0.5)
    api = svc.api
    make_package(content_dir, "9.17.1.tgz", "9.17.1", size=4096)
    make_package(content_dir, "other.tgz", "9.18.1", size=4096)
    assert api.download(http_server_noauth.url("9.17.1.tgz"))["state"] == "success"
    patch(api, "?skip_warnings=true", version="9.17.1")
    response = api.post("/api/cluster/software/download",
                        json={"url": http_server_noauth.url("other.tgz")})
    assert response.json()["error"]["code"] == "10551357"
    # a malformed request still gets its own error first, not the update's
    for body, code in (({"url": "gopher://127.0.0.1/x.tgz"}, "39387138"),
                       ({"url": 7}, "262197"), ({}, "262212"),
                       ({"url": http_server_noauth.url("x.tgz"), "colour": 1}, "262179")):
        response = api.post("/api/cluster/software/download", json=body)
        assert response.json()["error"]["code"] == code, body
    response = api.delete("/api/cluster/software/packages/9.17.1")
    assert response.json()["error"]["code"] == "10551347"
    response = api.patch(SOFTWARE + "?skip_warnings=true", json={"version": "9.17.1"})
    assert response.json()["error"]["code"] == "10551357"
    patch(api, "?action=cancel")
    assert api.wait_software("canceled")["state"] == "canceled"
    # after the cancel the repository is free again
    assert api.download(http_server_noauth.url("other.tgz"))["state"] == "success"


def test_pause_resume_and_cancel(settings, start_service, http_server_noauth, content_dir):
    svc = start_service(settings, update_step_seconds=0.3, update_minute_seconds=0.01)
    api = svc.api
    make_package(content_dir, "9.17.1.tgz", "9.17.1", size=4096)
    api.download(http_server_noauth.url("9.17.1.tgz"))
    patch(api, "?skip_warnings=true&stabilize_minutes=1", version="9.17.1")
    patch(api, "?action=pause")
    paused = api.wait_software("paused_by_user")
    assert paused["pending_version"] == "9.17.1"
    # the step the update waits at, not yet started, and its phase show the paused state
    held = [s for s in paused["status_details"] if s["state"] == "paused_by_user"]
    assert len(held) == 1 and "start_time" not in held[0]
    assert sum(d["state"] == "paused_by_user" for d in paused["update_details"]) == 1
    assert not any(s["state"] == "in_progress" for s in paused["status_details"])
    again = api.patch(SOFTWARE + "?action=pause")  # pausing twice is refused
    assert again.status_code == 400 and again.json()["error"]["code"] == "262185"
    patch(api, "?action=resume")
    patch(api, "?action=cancel")
    canceled = api.wait_software("canceled")
    assert "pending_version" not in canceled and canceled["end_time"]
    response = api.patch(SOFTWARE + "?action=resume")
    assert response.json()["error"]["code"] == "262185"


def test_nodes_to_update_limits_the_update(api, loaded):
    loaded()
    patch(api, "?skip_warnings=true&nodes_to_update=swdepot-02", version="9.17.1")
    assert api.wait_software("completed", "failed")["state"] == "completed"
    assert node_versions(api) == {"swdepot-01": "9.16.1", "swdepot-02": "9.17.1"}
    # the cluster's version is the lowest its nodes run
    assert api.get("/api/cluster").json()["version"]["major"] == 16


def test_a_node_already_at_the_version_is_recorded_as_skipped(api, loaded, ontap):
    """[I] ``skip_upgrade``: the update leaves out a node that already runs its version."""
    from netapp_ontap.resources import SoftwareHistory

    loaded()
    patch(api, "?skip_warnings=true&nodes_to_update=swdepot-02", version="9.17.1")
    assert api.wait_software("completed", "failed")["state"] == "completed"
    patch(api, "?skip_warnings=true", version="9.17.1")  # both nodes asked, one to do
    done = api.wait_software("completed", "failed")
    assert done["state"] == "completed"
    records = api.get(SOFTWARE + "/history?fields=*").json()["records"]
    assert [(r["node"]["name"], r["from_version"], r["to_version"], r["state"])
            for r in records] == [("swdepot-02", "9.16.1", "9.17.1", "successful"),
                                  ("swdepot-02", "9.17.1", "9.17.1", "skip_upgrade"),
                                  ("swdepot-01", "9.16.1", "9.17.1", "successful")]
    skipped = records[1]
    assert skipped["start_time"] == skipped["end_time"] == done["start_time"]
    assert [h.state for h in SoftwareHistory.get_collection(fields="state")][1] == \
        "skip_upgrade"


def test_a_copy_found_corrupt_in_its_step_pauses_with_the_way_out(api, loaded, swdepot,
                                                                   monkeypatch):
    """The pre-update checks passed; the node's download step then finds its copy bad."""
    loaded()
    monkeypatch.setattr(swdepot.service.repository, "copy_intact", lambda record, node: False)
    patch(api, "?skip_warnings=true", version="9.17.1")
    paused = api.wait_software("paused_on_error", "completed", "failed")
    assert paused["state"] == "paused_on_error"
    held = [s for s in paused["status_details"] if s["state"] == "paused_on_error"]
    assert [(s["name"], s["node"]["name"]) for s in held] == [("do-download-job",
                                                              "swdepot-01")]
    assert held[0]["issue"]["code"] == held[0]["action"]["code"] == 10551859
    assert "swdepot repository verify --repair" in held[0]["action"]["message"]
    assert not any(s["state"] == "in_progress" for s in paused["status_details"])
    monkeypatch.undo()
    patch(api, "?action=resume")
    done = api.wait_software("completed", "paused_on_error", "failed")
    assert done["state"] == "completed"
    assert not any("action" in s for s in done["status_details"])


def test_a_failed_post_update_check_is_listed_until_it_passes(api, loaded, swdepot):
    loaded()
    engine = swdepot.service.updates
    original = engine._step_work

    def node_01_behind(update, step, state):  # as if swdepot-01 had not come back updated
        if step.name == "post-update-checks":
            state = replace(state, node_versions={**state.node_versions,
                                                  "swdepot-01": "9.16.1"})
        return original(update, step, state)

    engine._step_work = node_01_behind
    patch(api, "?skip_warnings=true", version="9.17.1")
    paused = api.wait_software("paused_on_error", "completed", "failed")
    assert paused["state"] == "paused_on_error"
    assert paused["post_update_checks"] == [{
        "update_check": "Version check", "status": "error",
        "issue": {"message": "Node swdepot-01 runs 9.16.1, expected 9.17.1."},
        "action": {"message": "Resume the update to run the check again, or cancel it."}}]
    held = paused["status_details"][-1]
    assert held["name"] == "post-update-checks" and held["state"] == "paused_on_error"
    assert held["issue"]["code"] == held["action"]["code"] == 262145
    assert api.get(SOFTWARE + "?fields=post_update_checks.update_check").json()[
        "post_update_checks"] == [{"update_check": "Version check"}]
    engine._step_work = original
    patch(api, "?action=resume")
    done = api.wait_software("completed", "paused_on_error", "failed")
    assert done["state"] == "completed" and "post_update_checks" not in done


def test_a_pending_pause_or_cancel_shows_on_the_running_step():
    """The view of an update whose pause or cancel waits for the current step to end."""
    steps = plan(NODES, Pace(step_seconds=10), stabilize_minutes=1)
    running = replace(steps[1], state="in_progress", start_time=100.0)
    done = replace(steps[0], state="completed", start_time=90.0, end_time=100.0,
                   message="Pre-update checks complete.")
    update = Update("9.17.1", UpdateState.PAUSE_PENDING, (done, running, *steps[2:]),
                    tuple(NODES), skip_warnings=True, stabilize_minutes=1, start_time=90.0,
                    current=1)
    for state in (UpdateState.PAUSE_PENDING, UpdateState.CANCEL_PENDING):
        shown = replace(update, state=state)
        assert [s.state for s in step_progress(shown)] == ["completed", str(state)]
        assert [d.state for d in phase_progress(shown, 105.0)][:2] == ["completed",
                                                                       str(state)]
    moving = replace(update, state=UpdateState.IN_PROGRESS)
    assert [s.state for s in step_progress(moving)] == ["completed", "in_progress"]


def test_corrupt_copy_pauses_the_update_on_error(api, loaded, swdepot):
    loaded()
    copy = next(Path(swdepot.settings.store_roots[1]).rglob("*.tgz"))
    copy.write_bytes(b"bit rot")
    patch(api, "?skip_warnings=true", version="9.17.1")
    failed = api.wait_software("failed", "completed")
    assert failed["state"] == "failed"
    integrity = [r for r in failed["validation_results"] if r["status"] == "error"]
    assert integrity[0]["update_check"] == "Package integrity"
    assert "swdepot-02" in integrity[0]["issue"]["message"]
    initialize = failed["status_details"][0]
    assert initialize["state"] == "failed" and initialize["issue"]["code"] == 10551359
    assert "validation_results" in initialize["action"]["message"]


def test_downgrade_fails_validation(api, loaded):
    loaded("9.15.1")
    patch(api, "?skip_warnings=true", version="9.15.1")
    failed = api.wait_software("failed", "completed")
    assert failed["state"] == "failed"
    assert any(r["update_check"] == "Version compatibility" for r in failed["validation_results"])


def test_update_state_survives_a_restart(settings, start_service, http_server_noauth,
                                         content_dir):
    first = start_service(settings, update_step_seconds=0.3)
    make_package(content_dir, "9.17.1.tgz", "9.17.1", size=4096)
    first.api.download(http_server_noauth.url("9.17.1.tgz"))
    patch(first.api, "?skip_warnings=true", version="9.17.1")
    assert first.api.get(SOFTWARE).json()["state"] == "in_progress"
    first.stop()
    second = start_service(settings, update_step_seconds=0.02)
    done = second.api.wait_software("completed", "failed")
    assert done["state"] == "completed"
    assert node_versions(second.api) == {n: "9.17.1" for n in NODES}


def test_an_update_across_two_processes_does_each_steps_work_once(
        settings, start_service, http_server_noauth, content_dir):
    """Both processes tick the update; only the holder of its lease does a step's work
    (re-reading and hashing the copies), so each step is worked once, not once each."""
    from collections import Counter

    from service import free_port

    first = start_service(settings)
    second = start_service(settings, port=free_port(), node_name="swdepot-02")
    worked: Counter[tuple[str, str, str]] = Counter()
    for svc, who in ((first, "first"), (second, "second")):
        engine = svc.service.updates
        original = engine._step_work

        def counting(update, step, state, original=original, who=who):
            worked[(step.name, step.node or "", who)] += 1
            return original(update, step, state)

        engine._step_work = counting
    make_package(content_dir, "9.17.1.tgz", "9.17.1", size=4096)
    assert first.api.download(http_server_noauth.url("9.17.1.tgz"))["state"] == "success"
    response = second.api.patch(SOFTWARE + "?skip_warnings=true", json={"version": "9.17.1"})
    assert second.api.wait_job(response.json()["job"]["uuid"])["state"] == "success"
    done = first.api.wait_software("completed", "failed", "paused_on_error")
    assert done["state"] == "completed", done
    per_step = Counter((name, node) for name, node, _who in worked.elements())
    assert per_step and all(count == 1 for count in per_step.values()), worked
    assert len({who for _name, _node, who in worked}) == 1  # one process held the lease
    assert len(per_step) == len(done["status_details"])


def test_every_node_installation_is_in_the_history(api, loaded, ontap):
    """``/cluster/software/history``, as netapp-ontap's ``SoftwareHistory`` reads it."""
    from netapp_ontap.resources import SoftwareHistory

    assert api.get(SOFTWARE + "/history").json()["num_records"] == 0
    loaded()
    patch(api, "?skip_warnings=true", version="9.17.1")
    assert api.wait_software("completed", "failed")["state"] == "completed"
    loaded("9.18.1")
    patch(api, "?skip_warnings=true&nodes_to_update=swdepot-02", version="9.18.1")
    assert api.wait_software("completed", "failed")["state"] == "completed"
    records = api.get(SOFTWARE + "/history?fields=*").json()["records"]
    assert [(r["node"]["name"], r["from_version"], r["to_version"], r["state"])
            for r in records] == [("swdepot-01", "9.16.1", "9.17.1", "successful"),
                                  ("swdepot-02", "9.16.1", "9.17.1", "successful"),
                                  ("swdepot-02", "9.17.1", "9.18.1", "successful")]
    assert all(r["start_time"] <= r["end_time"] for r in records)
    nodes = {n["name"]: n["uuid"] for n in api.get("/api/cluster/nodes").json()["records"]}
    assert records[0]["node"]["uuid"] == nodes["swdepot-01"]
    default = api.get(SOFTWARE + "/history").json()["records"][0]
    assert set(default) == {"node", "start_time"}
    history = list(SoftwareHistory.get_collection(fields="node,from_version,to_version,state"))
    assert [(h.node.name, h.to_version, h.state) for h in history][-1] == (
        "swdepot-02", "9.18.1", "successful")


def test_a_canceled_update_records_the_node_it_had_begun(settings, start_service,
                                                         http_server_noauth, content_dir):
    # steps of a second: the cancel arrives while the first node's installation runs
    svc = start_service(settings, update_step_seconds=1.0, update_minute_seconds=0.01)
    make_package(content_dir, "9.17.1.tgz", "9.17.1", size=4096)
    svc.api.download(http_server_noauth.url("9.17.1.tgz"))
    patch(svc.api, "?skip_warnings=true&stabilize_minutes=1", version="9.17.1")
    deadline = time.monotonic() + 30
    while not any(s["name"] == "do-download-job" for s in svc.api.get(
            SOFTWARE + "?fields=status_details").json().get("status_details", [])):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    patch(svc.api, "?action=cancel")
    svc.api.wait_software("canceled")
    records = svc.api.get(SOFTWARE + "/history?fields=*").json()["records"]
    assert records and records[-1]["state"] == "canceled"
    assert records[-1]["to_version"] == "9.17.1" and records[-1]["from_version"] == "9.16.1"
