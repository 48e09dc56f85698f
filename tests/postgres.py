"""A real PostgreSQL server for the suite, and the engines store tests run on.

The server is Debian's (``.ci/run`` installs ``postgresql``), started once per session
by this fixture in a temporary directory, listening on 127.0.0.1 at a free port, and
stopped at the end. Each test gets a database of its own. As root, ``initdb`` and the
server run as the ``postgres`` user (PostgreSQL refuses to run as root).

``engine`` runs a test on both engines: ``engine.job_store()`` opens another connection
(another pool) to the same database each time, as another process would.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from realparts import missing
from service import free_port
from swdepot.jobs.store import JobStore


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """One PostgreSQL cluster in ``root``: ``url(name)`` for its databases."""

    def __init__(self, root: Path, bindir: Path) -> None:
        self.root = root
        self.bindir = bindir
        self.data = root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Create the cluster on the first start; later starts (after :meth:`stop`) bring
        the same one back on the same port, as a restarted server."""
        if not self.data.exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                      "-U", "swdepot", "--no-sync", "-E", "UTF8")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
                  "-l", str(self.root / "server.log"), "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
                  " -c max_connections=300 -c fsync=off -c synchronous_commit=off",
                  "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://swdepot@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "stop")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _bindir()
    if bindir is None:
        missing("PostgreSQL is not installed (Debian package `postgresql`; .ci/run "
                "installs it), so the PostgreSQL tests cannot run here")
    # not under pytest's temporary directory: that is private to root, and the server
    # runs as postgres
    root = Path(tempfile.mkdtemp(prefix="swdepot-postgres-"))
    server = PostgresServer(root, bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh database of the session's PostgreSQL."""
    return postgres_server.create_database()


class Engine:
    """A database on one engine, shared by every store a test opens on it."""

    def __init__(self, name: str, url: str | None, path: Path) -> None:
        self.name = name
        self.url = url
        self.path = path
        self._closers: list[Callable[[], None]] = []

    def job_store(self) -> JobStore:
        """A job store on a connection of its own (as another process has)."""
        if self.url is None:
            from swdepot.persistence.sqlite import Database, SqliteJobStore

            db: Any = Database(self.path)
            self._closers.append(db.close)
            return SqliteJobStore(db)
        from swdepot.persistence.postgres import PgDatabase, PgJobStore

        pg = PgDatabase(self.url, max_size=4)
        self._closers.append(pg.close)
        return PgJobStore(pg)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """Raw rows, to see what the store really keeps."""
        if self.url is None:
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                return conn.execute(query).fetchall()
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(query).fetchall()

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = (request.getfixturevalue("pg_url") if request.param == "postgresql" else None)
    opened = Engine(request.param, url, tmp_path / "jobs.db")
    try:
        yield opened
    finally:
        opened.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
