"""Service wiring: settings files, the admin password, store placement failures."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest

from pkgfactory import make_package
from swdepot.auth import hash_password_soon, verify_password
from swdepot.config import Settings, load_settings
from swdepot.service import Service


def test_settings_file_with_cluster_identity(tmp_path: Path) -> None:
    config = tmp_path / "swdepot.toml"
    config.write_text(
        'data_dir = "state"\nport = 9443\nallowed_networks = ["127.0.0.0/8"]\n'
        '[cluster]\nname = "lab"\nversion = "9.15.1P2"\nnodes = ["a", "b", "c"]\n'
    )
    settings = load_settings(config, port=10443)
    assert settings.data_dir == tmp_path / "state"
    assert settings.port == 10443  # flags win over the file
    assert settings.cluster.name == "lab" and settings.cluster.nodes == ("a", "b", "c")
    service = Service(settings)
    try:
        assert service.profile.cluster().version == "9.15.1P2"
        assert [n.name for n in service.profile.software().nodes] == ["a", "b", "c"]
    finally:
        service.close()


def test_settings_file_rejects_unknown_keys(tmp_path: Path) -> None:
    config = tmp_path / "swdepot.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="prot"):
        load_settings(config)


def test_generated_admin_password_is_printed_once_and_only_hashed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    first = io.StringIO()
    service = Service(settings)
    service.ensure_admin(out=first)
    password = first.getvalue().split("'admin': ")[1].split()[0]
    stored_hash, role = service.users.get("admin")
    assert role == "admin" and password not in stored_hash
    assert verify_password(password, stored_hash)
    # primed: the first request needs no second slow hash
    assert service.authenticator.cached(_basic("admin", password)) is not None
    assert service.authenticator.cached(_basic("admin", password + "x")) is None
    assert service.authenticator.authenticate(_basic("admin", password)).name == "admin"
    service.close()
    assert password.encode() not in (tmp_path / "d" / "swdepot.db").read_bytes()

    second = io.StringIO()
    service = Service(settings)
    service.ensure_admin(out=second)
    assert second.getvalue() == ""  # printed once, on first start only
    assert verify_password(password, service.users.get("admin")[0])
    service.close()


def test_a_given_password_hashed_early_is_stored_unless_it_changed(tmp_path: Path) -> None:
    """serve hashes the given password before its imports (cli.py); a file that changed
    in between is hashed again, so the stored hash is always the current password's."""
    secret = tmp_path / "admin-password"
    secret.write_text("first pw\n")
    settings = Settings(data_dir=tmp_path / "d", admin_password_file=secret)
    early = hash_password_soon(settings.given_admin_password())
    service = Service(settings)
    service.ensure_admin(prehashed=early)
    assert service.users.get("admin")[0] == early.result()  # used as it was
    service.close()

    stale = hash_password_soon("first pw")
    secret.write_text("second pw\n")
    service = Service(settings)
    service.ensure_admin(prehashed=stale)
    stored = service.users.get("admin")[0]
    assert stored != stale.result() and verify_password("second pw", stored)
    assert service.authenticator.cached(_basic("admin", "second pw")) is not None
    service.close()


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_store_placement_failure_is_10551859(api, swdepot, import_dir) -> None:
    secondary = swdepot.settings.store_roots[1]
    shutil.rmtree(secondary / ".staging")
    (secondary / ".staging").write_text("not a directory")  # the node store is broken
    make_package(import_dir, "p.tgz", "9.12.1", size=4096)
    job = api.download("file:///p.tgz")
    assert job["state"] == "failure" and job["code"] == 10551859, job
    assert job["message"].startswith("Failed to set primary and secondary nodes")
    assert api.get("/api/cluster/software/packages").json()["num_records"] == 0
    assert list((swdepot.settings.store_roots[0] / ".staging").rglob("*.part")) == []


def test_a_starting_node_ends_only_its_own_interrupted_jobs(tmp_path: Path) -> None:
    """Processes sharing one database: node B starting must not fail node A's live job."""
    import threading

    from swdepot.jobs.model import Job, JobKind, JobState

    release = threading.Event()
    node_a = Service(Settings(data_dir=tmp_path / "d"))
    node_a.start()
    job = Job.new(JobKind.DOWNLOAD, "POST /api/cluster/software/download",
                  node=node_a.settings.node)
    node_a.runner.start(job, lambda ctx: "success" if release.wait(30) else "late")
    while node_a.jobs.get(job.uuid).state != "running":
        threading.Event().wait(0.01)

    node_b = Service(Settings(data_dir=tmp_path / "d", node_name="swdepot-02"))
    node_b.start()
    assert node_b.jobs.get(job.uuid).state == "running"  # A's job is A's business
    release.set()
    node_a.close()
    assert node_b.jobs.get(job.uuid).state == "success"

    # a delete of swdepot-01 left running by a dead process of that node, and one that a
    # live swdepot-02 holds under an unexpired lease
    mine = Job.new(JobKind.DELETE_PACKAGE, "DELETE /api/cluster/software/packages/9.9.9",
                   node="swdepot-01", target="9.9.9",
                   params={"record_id": "gone", "store_key": "packages/gone/p.tgz"})
    theirs = Job.new(JobKind.DELETE_PACKAGE, "DELETE /api/cluster/software/packages/9.9.8",
                     node="swdepot-02", target="9.9.8")
    future = time.time() + 3600
    node_b.jobs.insert(mine, owner="swdepot-01/99999/dead", lease_until=future)
    node_b.jobs.insert(theirs, owner=node_b.runner.owner, lease_until=future)
    for job in (mine, theirs):
        node_b.jobs.transition(job.uuid, JobState.RUNNING, "running", start_time=time.time())
    restarted_a = Service(Settings(data_dir=tmp_path / "d"))
    restarted_a.start()
    deadline = time.monotonic() + 10
    while restarted_a.jobs.get(mine.uuid).state != "success":
        assert time.monotonic() < deadline, "the dead process's job was not taken over"
        time.sleep(0.02)
    assert restarted_a.jobs.get(theirs.uuid).state == "running"  # a live lease is respected
    assert restarted_a.jobs.get(theirs.uuid).owner == node_b.runner.owner
    restarted_a.close()
    node_b.close()
