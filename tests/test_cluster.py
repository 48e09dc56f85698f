"""Cluster mode end to end: ``swdepot serve`` nodes on a real PostgreSQL server and two
real S3 stores (SeaweedFS), each node with a data directory of its own.

Nodes share only the database, the stores and the job key (download passwords are
sealed with it in the job rows). Processes are killed with SIGKILL, their whole
process group, as a machine that goes away.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import requests

from pkgfactory import make_package
from seaweed import SeaweedStore, s3_environment
from servers import HTTP_PASSWORD, HTTP_USERNAME, Fault
from service import ADMIN_PASSWORD, Api, ServiceProcess, free_port
from swdepot.repository.s3 import PART_SIZE, S3Location, S3Store

DOWNLOAD = "/api/cluster/software/download"
PACKAGES = "/api/cluster/software/packages"


class Cluster:
    """Nodes on one database and two stores; ``start(name)`` adds one."""

    def __init__(self, root: Path, import_dir: Path, database: str, stores: list[str],
                 *, lease_seconds: float = 2.0, settings: str = "") -> None:
        self.root = root
        self.import_dir = import_dir
        self.database = database
        self.stores = stores
        self.nodes: dict[str, ServiceProcess] = {}
        self.config = root / "cluster.toml"
        key = root / "job.key"
        self.config.write_text(f"job_lease_seconds = {lease_seconds}\n"
                               f"job_key_file = {json.dumps(str(key))}\n{settings}")

    def args(self, name: str) -> tuple[str, ...]:
        stores = [arg for url in self.stores for arg in ("--store", url)]
        return ("--database", self.database, *stores, "--node-name", name,
                "--config", str(self.config))

    def start(self, name: str) -> Api:
        node = self.nodes.get(name) or ServiceProcess(self.root / name, self.import_dir,
                                                      free_port())
        self.nodes[name] = node
        log = (self.root / f"{name}.log").open("ab")
        try:
            return node.start(env=s3_environment(), args=self.args(name), stderr=log)
        finally:
            log.close()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def logs(self) -> str:
        """Every node's log (warnings and errors), for a failing test's report."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.root.glob("*.log")))


@pytest.fixture
def cluster(tmp_path: Path, import_dir: Path, pg_url: str, seaweed: SeaweedStore,
            seaweed_b: SeaweedStore, no_proxy_env: None) -> Iterator[Cluster]:
    stores = [seaweed.url(seaweed.create_bucket(), "pkgs"),
              seaweed_b.url(seaweed_b.create_bucket())]
    made = Cluster(tmp_path, import_dir, pg_url, stores)
    try:
        yield made
    finally:
        made.stop()
        print(made.logs())  # shown when the test fails


def _store(url: str, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    for name, value in s3_environment().items():
        monkeypatch.setenv(name, value)
    return S3Store(S3Location.parse(url), "check")


def _copies(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every package's bytes as each store holds them (read straight from the store)."""
    found = []
    for url in cluster.stores:
        store = _store(url, monkeypatch)
        for key in store.keys():  # noqa: SIM118 (a blob store, not a dict)
            with store.open(key) as fh:
                found.append(fh.read())
    return found


def test_nodes_on_s3_stores_serve_one_repository(cluster, http_server_noauth, content_dir,
                                                 monkeypatch):
    first = cluster.start("swdepot-01")
    second = cluster.start("swdepot-02")
    pkg = make_package(content_dir, "9.17.1.tgz", "9.17.1", size=3 * PART_SIZE // 2)
    job = first.download(http_server_noauth.url("9.17.1.tgz"))
    assert job["state"] == "success", job
    listed = second.get(f"{PACKAGES}?fields=version").json()["records"]
    assert [r["version"] for r in listed] == ["9.17.1"]
    assert _copies(cluster, monkeypatch) == [pkg.read_bytes()] * 2
    nodes = second.get("/api/cluster/nodes?fields=name,state").json()["records"]
    assert {(n["name"], n["state"]) for n in nodes} == {("swdepot-01", "up"),
                                                         ("swdepot-02", "up")}
    # nothing of the download stays staged, in the stores or in the data directories
    for url in cluster.stores:
        store = _store(url, monkeypatch)
        client = store.client
        assert not client.list_multipart_uploads(
            Bucket=store.location.bucket).get("Uploads")
    assert not [p for name in cluster.nodes for p in (cluster.root / name).rglob("*")
                if p.suffix in (".tgz", ".part")]
    # the package deleted on one node is gone from every store
    assert second.request("DELETE", f"{PACKAGES}/9.17.1?return_timeout=30"
                          ).status_code == 200
    assert _copies(cluster, monkeypatch) == []
    assert first.get(PACKAGES).json()["num_records"] == 0


def test_concurrent_downloads_on_two_nodes_one_wins(cluster, http_server_noauth,
                                                    content_dir):
    apis = [cluster.start("swdepot-01"), cluster.start("swdepot-02")]
    for n in (1, 2):
        make_package(content_dir, f"race-{n}.tgz", f"9.17.{n}", size=PART_SIZE)
        http_server_noauth.faults[f"/race-{n}.tgz"] = Fault("trickle",
                                                            bytes_per_second=4 << 20)
    barrier = threading.Barrier(2)
    answers: list[Any] = [None, None]

    def post(n: int) -> None:
        barrier.wait()
        answers[n] = apis[n].post(DOWNLOAD, json={
            "url": http_server_noauth.url(f"race-{n + 1}.tgz")})

    threads = [threading.Thread(target=post, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [202, 400], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 400).json()["error"]
    assert refused["code"] == "10551382" and "already in progress" in refused["message"]
    won = next(a for a in answers if a.status_code == 202).json()["job"]["uuid"]
    http_server_noauth.faults.clear()
    assert apis[0].wait_job(won, timeout=60)["state"] == "success"


def test_a_node_lost_mid_download_is_continued_from_the_uploaded_parts(
        cluster, http_server_noauth, content_dir, monkeypatch):
    """The node running a download is SIGKILLed with its process group past two parts.
    Within a lease another node takes the job over: the parts already in the stores
    are kept (the transfer resumes where they end, with ``Range``), and a client
    polling the surviving node sees ``success`` and byte-identical copies."""
    size = 5 * PART_SIZE
    pkg = make_package(content_dir, "big.tgz", "9.15.1", size=size)
    http_server_noauth.faults["/big.tgz"] = Fault("trickle", bytes_per_second=12 << 20)
    first = cluster.start("swdepot-01")
    survivor = cluster.start("swdepot-02")
    uuid = first.post(DOWNLOAD, json={"url": http_server_noauth.url("big.tgz")}
                      ).json()["job"]["uuid"]
    first.wait_download_bytes(2.5 * PART_SIZE, timeout=60)
    cluster.nodes["swdepot-01"].kill_group()
    http_server_noauth.faults.clear()
    job = survivor.wait_job(uuid, timeout=90)
    assert job["state"] == "success", job
    assert job["node"]["name"] == "swdepot-02"
    ranges = http_server_noauth.get_ranges("/big.tgz")
    assert len(ranges) == 2 and ranges[0] is None, ranges
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert resumed_at >= 2 * PART_SIZE and resumed_at % PART_SIZE == 0, ranges
    sha = survivor.get(f"{PACKAGES}/9.15.1?fields=sha256").json()["sha256"]
    assert sha == hashlib.sha256(pkg.read_bytes()).hexdigest()
    assert _copies(cluster, monkeypatch) == [pkg.read_bytes()] * 2
    # the dead node's parts became the first segment of each copy: never sent again
    for url in cluster.stores:
        store = _store(url, monkeypatch)
        [key] = list(store.keys())
        segments = store.manifest(key)
        assert len(segments) == 2 and segments[0][1] == resumed_at, segments


def test_a_store_lost_and_back_loses_nothing(tmp_path, import_dir, pg_url, seaweed,
                                             own_seaweed, http_server_noauth, content_dir,
                                             no_proxy_env, monkeypatch):
    """The secondary store stops: packages stay listed and the update's validation
    reads the surviving copy; a new download is refused with ONTAP's placement error;
    ``repository verify`` names the unreachable copy. Back, with a copy lost meanwhile,
    ``verify --repair`` restores it from the primary."""
    stores = [seaweed.url(seaweed.create_bucket()), own_seaweed.url(own_seaweed.create_bucket())]
    cluster = Cluster(tmp_path, import_dir, pg_url, stores)
    try:
        api = cluster.start("swdepot-01")
        pkg = make_package(content_dir, "9.17.1.tgz", "9.17.1")
        make_package(content_dir, "9.17.2.tgz", "9.17.2")
        assert api.download(http_server_noauth.url("9.17.1.tgz"))["state"] == "success"
        own_seaweed.stop()
        listed = api.get(f"{PACKAGES}?fields=version").json()["records"]
        assert [r["version"] for r in listed] == ["9.17.1"]
        validated = api.request("PATCH", "/api/cluster/software?validate_only=true",
                                json={"version": "9.17.1"})
        assert validated.status_code == 202, validated.text
        job = api.wait_job(validated.json()["job"]["uuid"], timeout=60)
        assert job["state"] == "success", job
        checks = api.get("/api/cluster/software?fields=validation_results").json()
        integrity = [r for r in checks["validation_results"]
                     if r["update_check"] == "Package integrity"]
        assert integrity and integrity[0]["status"] != "error", integrity
        refused = api.download(http_server_noauth.url("9.17.2.tgz"))
        assert refused["state"] == "failure"
        assert refused["code"] == 10551859, refused  # placement failed
        verify = _verify(cluster, "swdepot-01")
        assert verify.returncode == 1
        assert "swdepot-02: unreachable copy of 9.17.1.tgz: NOT repaired" in verify.stdout
    finally:
        own_seaweed.start() if not _running(own_seaweed) else None
    # the store is back, but the secondary copy was lost meanwhile
    secondary = _store(stores[1], monkeypatch)
    [key] = list(secondary.keys())
    secondary.delete(key)
    verify = _verify(cluster, "swdepot-01", "--repair")
    assert "swdepot-02: missing copy of 9.17.1.tgz: repaired from" in verify.stdout, verify
    assert _verify(cluster, "swdepot-01").returncode == 0
    with secondary.open(key) as fh:
        assert fh.read() == pkg.read_bytes()
    cluster.stop()


def _running(store: SeaweedStore) -> bool:
    return store._process is not None


def _verify(cluster: Cluster, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    stores = [arg for url in cluster.stores for arg in ("--store", url)]
    return subprocess.run(
        [sys.executable, "-m", "swdepot", "repository", "verify", "--data-dir",
         str(cluster.root / name), "--database", cluster.database, *stores, *extra],
        capture_output=True, text=True, timeout=120,
        env={**_environment(), **s3_environment()})


def _environment() -> dict[str, str]:
    import os

    return dict(os.environ)


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swdepot", "serve", "--data-dir", str(tmp_path / "node"),
         "--port", str(free_port()), "--node-name", "swdepot-01", *args],
        capture_output=True, text=True, timeout=60,
        env={**_environment(), **s3_environment(), "SWDEPOT_ADMIN_PASSWORD": ADMIN_PASSWORD})


def test_start_up_against_what_cannot_be_reached_is_one_line_and_status_2(
        tmp_path, pg_url, seaweed):
    closed = free_port()
    gone_store = _serve(tmp_path, "--database", pg_url, "--store",
                        f"s3://nowhere?endpoint=http://127.0.0.1:{closed}")
    assert gone_store.returncode == 2, gone_store.stderr
    assert gone_store.stderr.count("\n") == 1, gone_store.stderr
    [line] = gone_store.stderr.strip().splitlines()
    assert line.startswith("swdepot: cannot reach the package store s3://nowhere at "
                           f"http://127.0.0.1:{closed}"), line
    with psycopg.connect(pg_url) as conn:  # nothing was created in the database
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                              ).fetchone()
    assert tables == (0,)
    no_bucket = _serve(tmp_path, "--database", pg_url, "--store",
                       seaweed.url("no-such-bucket"))
    assert no_bucket.returncode == 2
    assert "cannot reach the package store s3://no-such-bucket" in no_bucket.stderr
    gone_db = _serve(tmp_path, "--database",
                     f"postgresql://swdepot:hunter2@127.0.0.1:{closed}/swdepot")
    assert gone_db.returncode == 2, gone_db.stderr
    [line] = gone_db.stderr.strip().splitlines()
    assert line.startswith("swdepot: cannot reach the database "
                           f"postgresql://swdepot:***@127.0.0.1:{closed}/swdepot"), line
    assert "hunter2" not in gone_db.stderr
    bad = _serve(tmp_path, "--store", "ftp://somewhere/x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "--store must be file:///PATH or s3://BUCKET" in bad.stderr


def _answers_or_503(api: Api, method: str, path: str, **kwargs: Any) -> int:
    """One request during a database outage: an answer, or ONTAP's 503 with Retry-After,
    never a 500, a traceback or a hung request."""
    try:
        reply = api.request(method, path, timeout=30, **kwargs)
    except requests.ConnectionError as exc:  # the node itself must not go away
        raise AssertionError(f"{method} {path}: {exc}") from None
    assert reply.status_code in (200, 202, 503), (method, path, reply.status_code,
                                                  reply.text)
    if reply.status_code == 503:
        error = reply.json()["error"]
        assert error["code"] == "393271", error
        assert "cannot be reached" in error["message"], error
        assert reply.headers["Retry-After"] == "1"
        assert "Traceback" not in reply.text
    return reply.status_code


def test_the_database_restarted_under_load_answers_503_then_recovers(
        cluster, postgres_server, http_server_noauth, content_dir, monkeypatch):
    """PostgreSQL stops while two nodes serve and a download runs: every request is
    answered (200) or refused with 503 + Retry-After and ONTAP's error body, never a 500;
    once the server is back, the download ends byte-identical and both nodes are up."""
    size = 4 * PART_SIZE
    pkg = make_package(content_dir, "big.tgz", "9.15.1", size=size)
    http_server_noauth.faults["/big.tgz"] = Fault("trickle", bytes_per_second=8 << 20)
    apis = [cluster.start("swdepot-01"), cluster.start("swdepot-02")]
    uuid = apis[0].post(DOWNLOAD, json={"url": http_server_noauth.url("big.tgz")}
                        ).json()["job"]["uuid"]
    apis[0].wait_download_bytes(PART_SIZE, timeout=60)
    postgres_server.stop()
    seen: list[int] = []
    try:
        for api in apis:
            for path in (f"/api/cluster/jobs/{uuid}", DOWNLOAD, PACKAGES,
                         "/api/cluster/nodes", "/api/cluster/software"):
                seen.append(_answers_or_503(api, "GET", path))
            seen.append(_answers_or_503(api, "POST", DOWNLOAD,
                                        json={"url": http_server_noauth.url("other.tgz")}))
    finally:
        postgres_server.start()
    assert 503 in seen, seen
    http_server_noauth.faults.clear()
    job = apis[1].wait_job(uuid, timeout=120)
    assert job["state"] == "success", job
    sha = apis[0].get(f"{PACKAGES}/9.15.1?fields=sha256").json()["sha256"]
    assert sha == hashlib.sha256(pkg.read_bytes()).hexdigest()
    assert _copies(cluster, monkeypatch) == [pkg.read_bytes()] * 2
    deadline = time.monotonic() + 30
    while True:
        nodes = apis[1].get("/api/cluster/nodes?fields=name,state").json()["records"]
        if sorted((n["name"], n["state"]) for n in nodes) == [("swdepot-01", "up"),
                                                              ("swdepot-02", "up")]:
            break
        assert time.monotonic() < deadline, nodes
        time.sleep(0.5)


def test_three_nodes_one_download_and_users_changed_everywhere_at_once(
        cluster, http_server_noauth, content_dir, tmp_path):
    """Three nodes: a download started on one is followed to success on the other two;
    a password changed with ``swdepot user add`` stops working on every node within a
    second (cached verifications included); failed logins on all three nodes count
    towards one lockout."""
    apis = [cluster.start(f"swdepot-0{n}") for n in (1, 2, 3)]
    pkg = make_package(content_dir, "9.16.1.tgz", "9.16.1", size=PART_SIZE + 12345)
    uuid = apis[0].post(DOWNLOAD, json={"url": http_server_noauth.url("9.16.1.tgz")}
                        ).json()["job"]["uuid"]
    for api in apis[1:]:
        assert api.wait_job(uuid, timeout=60)["state"] == "success"
        sha = api.get(f"{PACKAGES}/9.16.1?fields=sha256").json()["sha256"]
        assert sha == hashlib.sha256(pkg.read_bytes()).hexdigest()
    nodes = apis[2].get("/api/cluster/nodes?fields=name,state").json()["records"]
    assert [(n["name"], n["state"]) for n in nodes] == [
        ("swdepot-01", "up"), ("swdepot-02", "up"), ("swdepot-03", "up")]

    for api in apis:  # every node has the admin's credentials cached now
        assert api.get("/api/cluster").status_code == 200
    new_password = tmp_path / "new-password"
    new_password.write_text("a-new-admin-password-42\n")
    changed = subprocess.run(
        [sys.executable, "-m", "swdepot", "user", "add", "admin", "--role", "admin",
         "--password-file", str(new_password), "--data-dir", str(tmp_path / "cli"),
         "--database", cluster.database], capture_output=True, text=True, timeout=60,
        env=_environment())
    assert changed.returncode == 0, changed.stderr
    started = time.monotonic()
    for api in apis:
        while api.get("/api/cluster").status_code != 401:
            assert time.monotonic() - started < 3, "the old password still works"
            time.sleep(0.05)
    for api in apis:
        api.session.auth = ("admin", "a-new-admin-password-42")
        assert api.get("/api/cluster").status_code == 200

    wrong = [Api(api.base, api.session.verify, ("admin", "guess")) for api in apis]
    statuses = [wrong[n % 3].get("/api/cluster").status_code for n in range(10)]
    assert statuses == [401] * 10  # login_max_failures (10), spread over three nodes
    for api in wrong:
        refused = api.get("/api/cluster")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "262160"


def test_a_node_lost_during_an_update_step_is_replaced_by_another(
        tmp_path, import_dir, pg_url, seaweed, seaweed_b, http_server_noauth, content_dir,
        no_proxy_env):
    """The node that advances a rolling update (it holds the update's lease) is SIGKILLed
    in the middle of a step: the other node takes the lease over within one lease
    period, finishes the step and the update completes."""
    stores = [seaweed.url(seaweed.create_bucket()), seaweed_b.url(seaweed_b.create_bucket())]
    cluster = Cluster(tmp_path, import_dir, pg_url, stores,
                      settings="update_step_seconds = 2.0\nupdate_minute_seconds = 0.02\n")
    try:
        apis = {name: cluster.start(name) for name in ("swdepot-01", "swdepot-02")}
        make_package(content_dir, "9.17.1.tgz", "9.17.1", size=4096)
        first = apis["swdepot-01"]
        assert first.download(http_server_noauth.url("9.17.1.tgz"))["state"] == "success"
        started = first.patch("/api/cluster/software?skip_warnings=true",
                              json={"version": "9.17.1"})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 30
        while True:  # a step under way, and who advances it
            body = first.get("/api/cluster/software?fields=state,status_details").json()
            steps = body.get("status_details", [])
            running = [s for s in steps if s.get("state") == "in_progress"]
            with psycopg.connect(pg_url) as conn:
                holder = conn.execute("SELECT node FROM leases WHERE name = 'software-update'"
                                      ).fetchone()
            if running and holder is not None:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        victim = holder[0]
        survivor = apis["swdepot-02" if victim == "swdepot-01" else "swdepot-01"]
        cluster.nodes[victim].kill_group()
        done = survivor.wait_software("completed", "failed", "paused_on_error", timeout=90)
        assert done["state"] == "completed", done
        assert all(s["state"] == "completed" for s in done["status_details"]), done
        with psycopg.connect(pg_url) as conn:
            holder = conn.execute("SELECT node FROM leases WHERE name = 'software-update'"
                                  ).fetchone()
        assert holder is not None and holder[0] != victim
        versions = {n["name"]: n["version"] for n in done["nodes"]}
        assert set(versions.values()) == {"9.17.1"}, versions
    finally:
        cluster.stop()
        print(cluster.logs())


def test_a_node_name_is_unique_in_the_cluster(cluster, tmp_path):
    """A second process with the name of a node that is up is refused (exit 1) before it
    touches anything; a node without a name is refused in cluster mode (exit 2); the
    name is free again once its node is gone."""
    first = cluster.start("swdepot-01")
    twin = _serve(tmp_path / "twin", "--database", cluster.database, "--config",
                  str(cluster.config), *[a for u in cluster.stores for a in ("--store", u)])
    assert twin.returncode == 1, twin.stderr
    [line] = twin.stderr.strip().splitlines()[-1:]
    assert line.startswith("swdepot: node swdepot-01 is already up in this cluster ("), line
    assert first.get("/api/cluster/nodes").status_code == 200  # the first one is untouched
    nameless = subprocess.run(
        [sys.executable, "-m", "swdepot", "serve", "--data-dir", str(tmp_path / "anon"),
         "--port", str(free_port()), "--database", cluster.database],
        capture_output=True, text=True, timeout=60, env=_environment())
    assert nameless.returncode == 2
    assert "--node-name is required with --database" in nameless.stderr
    cluster.nodes["swdepot-01"].kill_group()  # SIGKILL: its pid is gone at once
    again = cluster.start("swdepot-01")  # same host, dead pid: no wait for the lease
    nodes = again.get("/api/cluster/nodes?fields=name,state").json()["records"]
    assert [(n["name"], n["state"]) for n in nodes] == [("swdepot-01", "up")]


def test_a_download_password_reaches_neither_database_nor_store(
        cluster, http_server, content_dir, monkeypatch):
    """A download with credentials is taken over by another node (which opens the sealed
    password with the shared job key); afterwards no row of any table and no object of
    either store holds the password, and the job shows no trace of it."""
    pkg = make_package(content_dir, "9.15.2.tgz", "9.15.2", size=2 * PART_SIZE)
    http_server.faults["/9.15.2.tgz"] = Fault("trickle", bytes_per_second=8 << 20)
    first, survivor = cluster.start("swdepot-01"), cluster.start("swdepot-02")
    uuid = first.post(DOWNLOAD, json={"url": http_server.url("9.15.2.tgz"),
                                      "username": HTTP_USERNAME, "password": HTTP_PASSWORD}
                      ).json()["job"]["uuid"]
    first.wait_download_bytes(PART_SIZE, timeout=60)
    cluster.nodes["swdepot-01"].kill_group()
    http_server.faults.clear()
    job = survivor.wait_job(uuid, timeout=90)
    assert job["state"] == "success", job
    assert job["node"]["name"] == "swdepot-02"
    assert HTTP_PASSWORD not in json.dumps(job)
    assert _copies(cluster, monkeypatch) == [pkg.read_bytes()] * 2
    with psycopg.connect(cluster.database) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
        assert "jobs" in tables
        for table in tables:
            dumped = conn.execute(f"SELECT coalesce(string_agg(t::text, E'\\n'), '')"
                                  f" FROM {table} t").fetchone()
            assert dumped is not None and HTTP_PASSWORD not in dumped[0], table
    env = s3_environment()
    for url in cluster.stores:  # every object of the bucket: manifests, segments, parts
        where = S3Location.parse(url)
        client = boto3.client("s3", endpoint_url=where.endpoint, region_name=where.region,
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        listed = client.list_objects_v2(Bucket=where.bucket).get("Contents", [])
        assert listed
        for item in listed:
            body = client.get_object(Bucket=where.bucket, Key=item["Key"])["Body"].read()
            assert HTTP_PASSWORD.encode() not in body, item["Key"]
