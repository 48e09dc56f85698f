"""Cluster mode's database: every store on a real PostgreSQL server (tests/postgres.py).

The job store's engine tests run on both engines in test_job_engine.py; these cover the
other stores, the numbered migrations, and services that keep everything in PostgreSQL
(`--database`), two of them sharing one database as two nodes do.
"""

from __future__ import annotations

import hashlib
import threading

import psycopg
import pytest

from pkgfactory import make_package
from servers import Fault
from service import ServiceProcess, free_port
from swdepot.config import Settings
from swdepot.packages.model import PackageKind
from swdepot.persistence.migrations import POSTGRES, SchemaTooNew
from swdepot.persistence.postgres import (
    PgDatabase,
    PgLeases,
    PgPackageCatalog,
    PgProfileStore,
    PgUserStore,
)
from swdepot.persistence.stores import BadDatabaseUrl, open_stores, redact
from swdepot.repository.catalog import DuplicateName, DuplicateVersion, PackageRecord
from swdepot.software.update import ProfileState

DOWNLOAD = "/api/cluster/software/download"


def record(n: int, version: str, kind: PackageKind = PackageKind.IMAGE) -> PackageRecord:
    return PackageRecord(id=f"id-{n}", version=version, file_name=f"pkg-{n}.tgz", kind=kind,
                         size=n, sha256="0" * 64, create_time=float(n), store_key=f"k{n}")


@pytest.fixture
def pg(pg_url):
    db = PgDatabase(pg_url)
    yield db
    db.close()


def test_the_catalog_keeps_file_names_and_image_versions_unique(pg):
    catalog = PgPackageCatalog(pg)
    catalog.add(record(1, "9.17.1"))
    catalog.add(record(2, "9.17.1", PackageKind.FIRMWARE))  # firmware may share a version
    with pytest.raises(DuplicateVersion):
        catalog.add(record(3, "9.17.1"))
    with pytest.raises(DuplicateName):
        catalog.add(PackageRecord(**{**record(4, "9.18.1").__dict__, "file_name": "pkg-1.tgz"}))
    assert catalog.by_version("9.17.1") == record(1, "9.17.1")
    assert catalog.by_file_name("pkg-2.tgz").kind is PackageKind.FIRMWARE
    assert [r.id for r in catalog.all()] == ["id-1", "id-2"]
    assert [r.id for r in catalog.all(PackageKind.FIRMWARE)] == ["id-2"]
    assert catalog.remove("id-1") and not catalog.remove("id-1")
    assert catalog.by_id("id-1") is None


def test_the_profile_is_saved_by_compare_and_set(pg):
    first, second = PgProfileStore(pg), PgProfileStore(pg)
    assert first.load() == (ProfileState(), 0)
    state = ProfileState(node_versions={"n1": "9.17.1"})
    assert first.save(state, 0)
    assert not second.save(ProfileState(), 0)  # somebody saved first
    loaded, revision = second.load()
    assert loaded == state and revision == 1
    assert second.save(ProfileState(node_versions={"n1": "9.18.1"}), 1)
    assert not first.save(state, 1)  # stale revision
    assert first.load()[1] == 2


def test_a_lease_is_held_until_it_runs_out(pg):
    leases = PgLeases(pg)
    assert leases.acquire("software-update", "a/1", "node-a", now=100, until=110)
    assert leases.acquire("software-update", "a/1", "node-a", now=105, until=115)  # renewed
    assert not leases.acquire("software-update", "b/2", "node-b", now=110, until=120)
    assert leases.acquire("software-update", "b/2", "node-b", now=116, until=126)  # expired
    # a later process of the same node takes it at once (its node lock proves the old dead)
    assert leases.acquire("software-update", "b/3", "node-b", now=117, until=127)


def test_users_are_kept_with_their_hashes_and_roles(pg):
    users = PgUserStore(pg)
    users.put("admin", "hash-1", "admin")
    users.put("reader", "hash-2", "readonly")
    users.put("admin", "hash-3", "admin")
    assert users.get("admin") == ("hash-3", "admin")
    assert users.all() == [("admin", "admin"), ("reader", "readonly")]
    assert users.delete("reader") and not users.delete("reader")


def test_migrations_are_numbered_run_once_and_refuse_a_newer_schema(pg_url):
    opened = [None] * 4

    def open_one(i: int) -> None:  # nodes starting at once take turns
        opened[i] = PgDatabase(pg_url)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for db in opened:
        db.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (len(POSTGRES),)]
        conn.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(SchemaTooNew, match="newer than this swdepot knows"):
        PgDatabase(pg_url)


def test_a_database_url_is_checked_and_never_shown_with_its_password(tmp_path):
    with pytest.raises(BadDatabaseUrl) as refused:
        open_stores(Settings(data_dir=tmp_path, database="mysql://u:hunter2@h/db"))
    assert "hunter2" not in str(refused.value)
    assert redact("postgresql://u:hunter2@h:5432/db") == "postgresql://u:***@h:5432/db"


def test_a_service_on_postgresql_keeps_everything_there(settings, start_service, pg_url,
                                                        http_server_noauth, content_dir,
                                                        tmp_path):
    service = start_service(settings, database=pg_url)
    assert service.service.stores.engine == "postgresql"
    make_package(content_dir, "9.17.1.tgz", "9.17.1")
    assert service.api.download(http_server_noauth.url("9.17.1.tgz"))["state"] == "success"
    uploaded = make_package(tmp_path, "9.17.4.tgz", "9.17.4")
    with uploaded.open("rb") as fh:
        response = service.api.post("/api/cluster/software/upload?return_timeout=30",
                                    files={"file": (uploaded.name, fh)})
    assert response.status_code == 201, response.text
    versions = {r["version"] for r in service.api.get(
        "/api/cluster/software/packages").json()["records"]}
    assert versions == {"9.17.1", "9.17.4"}
    with psycopg.connect(pg_url) as conn:
        files = {r[0] for r in conn.execute("SELECT file_name FROM packages")}
        kinds = sorted(r[0] for r in conn.execute("SELECT kind FROM jobs"))
        admin = conn.execute("SELECT role FROM users WHERE name = 'admin'").fetchone()
    assert files == {"9.17.1.tgz", "9.17.4.tgz"}
    assert kinds == ["download", "upload"] and admin == ("admin",)
    assert not settings.database_path.exists()  # no SQLite file beside it


def test_two_nodes_on_one_database_share_the_download_slot_and_cancel(
        settings, start_service, pg_url, http_server_noauth, content_dir):
    first = start_service(settings, database=pg_url)
    second = start_service(settings, database=pg_url, port=free_port(),
                           node_name="swdepot-02")
    make_package(content_dir, "slow.tgz", "9.17.2", size=4 << 20)
    make_package(content_dir, "other.tgz", "9.17.3")
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=256 * 1024)
    uuid = first.api.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")}
                          ).json()["job"]["uuid"]
    first.api.wait_download_bytes(100_000)
    refused = second.api.post(DOWNLOAD, json={"url": http_server_noauth.url("other.tgz")})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "10551382"  # one download, cluster-wide
    seen = second.api.get(f"/api/cluster/jobs/{uuid}").json()
    assert seen["state"] == "running" and seen["node"]["name"] == "swdepot-01"
    assert second.api.patch(f"/api/cluster/jobs/{uuid}?action=cancel").status_code == 200
    job = second.api.wait_job(uuid)
    assert job["state"] == "failure" and "canceled" in job["message"]
    assert second.api.download(http_server_noauth.url("other.tgz"))["state"] == "success"


def test_a_node_killed_mid_download_is_taken_over_by_another_node(
        tmp_path, import_dir, pg_url, http_server_noauth, content_dir, no_proxy_env):
    """Two ``swdepot serve --database`` nodes; the one running a download is SIGKILLed at
    40 %. Once its lease runs out the other node takes the job over and continues from
    the staged bytes (``Range``); a client polling the surviving node sees ``success``."""
    size = 24 << 20
    pkg = make_package(content_dir, "big.tgz", "9.15.1", size=size)
    http_server_noauth.faults["/big.tgz"] = Fault("trickle", bytes_per_second=6 << 20)
    config = tmp_path / "cluster.toml"
    config.write_text("job_lease_seconds = 2.0\n")
    data_dir = tmp_path / "shared"
    common = ("--database", pg_url, "--config", str(config))
    first = ServiceProcess(data_dir, import_dir, free_port())
    second = ServiceProcess(data_dir, import_dir, free_port())
    try:
        api = first.start(args=(*common, "--node-name", "swdepot-01"))
        survivor = second.start(args=(*common, "--node-name", "swdepot-02"))
        uuid = api.post(DOWNLOAD, json={"url": http_server_noauth.url("big.tgz")}
                        ).json()["job"]["uuid"]
        api.wait_download_bytes(0.4 * size, timeout=60)
        first.kill()
        http_server_noauth.faults.clear()
        job = survivor.wait_job(uuid, timeout=60)
        assert job["state"] == "success", job
        assert job["node"]["name"] == "swdepot-02"
        ranges = http_server_noauth.get_ranges("/big.tgz")
        assert len(ranges) == 2 and ranges[0] is None and ranges[1], ranges
        sha = survivor.get("/api/cluster/software/packages/9.15.1?fields=sha256").json()
        assert sha["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
        assert list((data_dir / "store").rglob("*.part")) == []
        api.session.close()
        survivor.session.close()
    finally:
        first.stop()
        second.stop()
