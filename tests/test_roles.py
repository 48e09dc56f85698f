"""Role-based access: ``admin`` may change things, ``readonly`` only reads; users come
from ``swdepot user add`` (slow password hashes in the service's database)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
import requests
from netapp_ontap import HostConnection
from netapp_ontap.error import NetAppRestError
from netapp_ontap.resources import SoftwarePackage, SoftwarePackageDownload

VIEWER = ("viewer", "viewer-pass-123")


def swdepot_cli(data_dir, *args: str, password: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    if password is not None:
        env["SWDEPOT_USER_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "swdepot", "user", *args, "--data-dir",
                           str(data_dir)], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


@pytest.fixture
def viewer(swdepot):
    done = swdepot_cli(swdepot.settings.data_dir, "add", VIEWER[0], "--role", "readonly",
                       password=VIEWER[1])
    assert done.returncode == 0, done.stderr
    return VIEWER


def as_user(swdepot, user: tuple[str, str]) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(swdepot.cert)
    session.auth = user
    return session


def test_readonly_user_reads_but_may_not_write(swdepot, viewer, http_server_noauth):
    base = swdepot.api.base
    with as_user(swdepot, viewer) as s:
        for path in ("/api/cluster", "/api/cluster/software", "/api/cluster/jobs",
                     "/api/cluster/software/packages", "/api/cluster/software/download"):
            assert s.get(base + path).status_code == 200, path
        writes = [
            s.post(base + "/api/cluster/software/download",
                   json={"url": http_server_noauth.url("x.tgz")}),
            s.delete(base + "/api/cluster/software/packages/9.17.1"),
            s.patch(base + "/api/cluster/software", json={"version": "9.17.1"}),
            s.patch(base + "/api/cluster/jobs/00000000-0000-0000-0000-000000000000"
                    "?action=cancel"),
            s.post(base + "/api/cluster/software/upload", files={"file": ("a.tgz", b"x")}),
        ]
    for response in writes:
        assert response.status_code == 403, response.request.url
        assert response.json()["error"] == {"message": "not authorized for that command",
                                            "code": "6"}
    assert http_server_noauth.requests == []


def test_wrong_password_of_a_known_user_is_401(swdepot, viewer):
    with as_user(swdepot, (VIEWER[0], "wrong")) as s:
        response = s.get(swdepot.api.base + "/api/cluster")
    assert response.status_code == 401


def test_netapp_ontap_sees_403_for_readonly(swdepot, viewer):
    with HostConnection("127.0.0.1", port=swdepot.settings.port, username=VIEWER[0],
                        password=VIEWER[1], verify=False) as connection:
        assert SoftwarePackage.count_collection() == 0
        with pytest.raises(NetAppRestError) as info:
            SoftwarePackageDownload(url="http://127.0.0.1:9/x.tgz").post(poll=False)
        connection.session.close()
    assert info.value.status_code == 403
    assert info.value.response_body["error"]["code"] == "6"


def test_user_cli_stores_only_hashes_and_manages_users(swdepot, viewer):
    data_dir = swdepot.settings.data_dir
    listed = swdepot_cli(data_dir, "list")
    assert "viewer\treadonly" in listed.stdout and "admin\tadmin" in listed.stdout
    with sqlite3.connect(data_dir / "swdepot.db") as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE name='viewer'").fetchone()
    assert stored.startswith("pbkdf2_sha256$") and VIEWER[1] not in stored
    # promote to admin, then delete
    assert swdepot_cli(data_dir, "add", "viewer", "--role", "admin",
                       password=VIEWER[1]).returncode == 0
    assert "viewer\tadmin" in swdepot_cli(data_dir, "list").stdout
    assert swdepot_cli(data_dir, "delete", "viewer").returncode == 0
    assert swdepot_cli(data_dir, "delete", "viewer").returncode == 1
    assert swdepot_cli(data_dir, "delete", "admin").returncode == 1
    assert swdepot_cli(data_dir, "add", "empty", password="").returncode != 0
