"""Fixtures that run a real swdepot service: in-process (uvicorn on a thread) or as a
separate ``swdepot serve`` process that tests can kill and restart.

Every service here is confined to loopback by its outbound allow-list.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from swdepot.auth import PendingHash, hash_password
from swdepot.config import Settings
from swdepot.server import service_config
from swdepot.service import Service
from swdepot.tls import ensure_self_signed

ADMIN_PASSWORD = "admin-secret"
LOOPBACK_ONLY = ("127.0.0.1/32",)


#: Ports handed out by :func:`free_port`: each pytest-xdist worker has a range of its
#: own, below the kernel's ephemeral range (32768-60999), so no two workers (and no
#: outgoing connection) are ever given the same port; within a process, a counter.
PORT_RANGE = (12000, 32000)
_WORKERS = 16  # ranges of 1,250 ports: up to 16 xdist workers
_next_port: list[int] = []


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...
    return int(worker[2:]) % _WORKERS if worker[2:].isdigit() else 0


def free_port() -> int:
    """A loopback port nobody listens on, which no other test process is given.

    The kernel's port 0 races between parallel workers (a port freed by one is handed
    to the next bind anywhere); these come from this worker's own range, in turn,
    skipping any that is in use."""
    low, high = PORT_RANGE
    size = (high - low) // _WORKERS
    start = low + _worker_index() * size
    if not _next_port:
        _next_port.append(start)
    for _ in range(size):
        port = _next_port[0]
        _next_port[0] = start + (port + 1 - start) % size
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + size - 1}")


@functools.cache
def admin_hash() -> PendingHash:
    """The test admin password's hash, made once per test process (the slow hash itself
    is tested in test_auth.py and by every ``swdepot serve`` a test starts)."""
    done: Future[str] = Future()
    done.set_result(hash_password(ADMIN_PASSWORD))
    return PendingHash(ADMIN_PASSWORD, done)


_TLS_PAIR: list[tuple[Path, Path]] = []


def shared_tls_pair() -> tuple[Path, Path]:
    """One self-signed pair for 127.0.0.1 per test process, copied into each in-process
    service's TLS directory (``swdepot serve`` processes make their own, as users see)."""
    if not _TLS_PAIR:
        directory = Path(tempfile.mkdtemp(prefix="swdepot-tls-"))
        _TLS_PAIR.append(ensure_self_signed(directory, ["127.0.0.1"]))
    return _TLS_PAIR[0]


class Api:
    """A requests session against one swdepot, with ONTAP-style helpers."""

    def __init__(self, base: str, cert: Path, auth: tuple[str, str]) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies, no REQUESTS_CA_BUNDLE override
        self.session.verify = str(cert)
        self.session.auth = auth

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def wait_software(self, *states: str, timeout: float = 30) -> dict[str, Any]:
        """Poll ``/cluster/software`` until its update state is one of ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.get("/api/cluster/software").json()
            if body.get("state") in states:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"update still {body.get('state')} after {timeout}s")
            time.sleep(0.02)

    def wait_job(self, uuid: str, timeout: float = 30) -> dict[str, Any]:
        """Poll a job until it ends, as the ONTAP clients do."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(f"/api/cluster/jobs/{uuid}").json()
            if body.get("state") in ("success", "failure"):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"job {uuid} still {body.get('state')} after {timeout}s")
            time.sleep(0.02)

    def wait_download_bytes(self, at_least: float, timeout: float = 30) -> None:
        """Poll the download status until the running download has moved ``at_least``
        bytes."""
        deadline = time.monotonic() + timeout
        while self.get("/api/cluster/software/download").json().get("bytes_done", 0) \
                < at_least:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {at_least} bytes after {timeout}s")
            time.sleep(0.02)

    def download(self, url: str, **body: Any) -> dict[str, Any]:
        """Start a download and wait for its job; returns the finished job."""
        response = self.post("/api/cluster/software/download", json={"url": url, **body})
        assert response.status_code == 202, response.text
        return self.wait_job(response.json()["job"]["uuid"])


class RunningService:
    """uvicorn serving a :class:`Service` on a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if not (settings.tls_dir / "server.crt").exists():
            settings.tls_dir.mkdir(parents=True, exist_ok=True)
            for made in shared_tls_pair():
                shutil.copy2(made, settings.tls_dir / made.name)
        self.service = Service(settings)
        given = settings.given_admin_password()
        self.service.ensure_admin(out=open(os.devnull, "w"),  # noqa: SIM115
                                  prehashed=admin_hash() if given == ADMIN_PASSWORD else None)
        self.service.start()
        cert, key = ensure_self_signed(settings.tls_dir, ["127.0.0.1"])
        self.cert = cert
        config = service_config(
            self.service, "127.0.0.1", settings.port, log_level="warning",
            lifespan="off", timeout_graceful_shutdown=2,
            ssl_certfile=str(cert), ssl_keyfile=str(key),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("swdepot did not start")
            time.sleep(0.01)
        self.api = Api(f"https://127.0.0.1:{settings.port}", cert,
                       (settings.admin_user, ADMIN_PASSWORD))

    def stop(self) -> None:
        self.api.session.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.service.close()


@pytest.fixture
def settings(tmp_path: Path, import_dir: Path, tls_ca_file: Path, no_proxy_env: None) -> Settings:
    """Settings for a test service: own data dir, test CA trusted, loopback only."""
    return Settings(
        data_dir=tmp_path / "swdepot", port=free_port(), admin_password=ADMIN_PASSWORD,
        import_dir=import_dir, ca_files=(tls_ca_file,), allowed_networks=LOOPBACK_ONLY,
        connect_timeout=5, stall_timeout=10,
        retry_base_delay=0.05, retry_max_delay=0.2,  # transient failures retry quickly here
        update_step_seconds=0.05, update_minute_seconds=0.01,  # a rolling update in ~1 s
    )


@pytest.fixture
def start_service() -> Iterator[Callable[..., RunningService]]:
    """Start services with settings changes; all are stopped at teardown."""
    running: list[RunningService] = []

    def start(base: Settings, **changes: Any) -> RunningService:
        svc = RunningService(replace(base, **changes))
        running.append(svc)
        return svc

    yield start
    for svc in running:
        svc.stop()


@pytest.fixture
def swdepot(settings: Settings, start_service: Callable[..., RunningService]) -> RunningService:
    return start_service(settings)


@pytest.fixture
def api(swdepot: RunningService) -> Api:
    return swdepot.api


class ServiceProcess:
    """``swdepot serve`` as a child process, for kill -9 and restart tests."""

    def __init__(self, data_dir: Path, import_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.import_dir = import_dir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
              stderr: Any = subprocess.PIPE) -> Api:
        """Start ``swdepot serve``; ``env``/``args`` add variables and flags (e.g. test points)."""
        env = {**os.environ, "SWDEPOT_ADMIN_PASSWORD": ADMIN_PASSWORD, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swdepot", "serve", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--import-dir", str(self.import_dir),
             "--allow-network", LOOPBACK_ONLY[0], "--log-level", "warning", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )
        cert = self.data_dir / "tls" / "server.crt"
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"swdepot exited: {err}")
            if cert.exists():
                api = Api(f"https://127.0.0.1:{self.port}", cert, ("admin", ADMIN_PASSWORD))
                with contextlib.suppress(requests.ConnectionError):
                    if api.get("/api/cluster", timeout=2).status_code == 200:
                        return api
            if time.monotonic() > deadline:
                raise RuntimeError("swdepot did not answer in time")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def kill_group(self) -> None:
        """SIGKILL the service and every process it started (a machine lost)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def service_process(tmp_path: Path, import_dir: Path, no_proxy_env: None
                    ) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path / "swdepot-proc", import_dir, free_port())
    yield proc
    proc.stop()
