"""PostgreSQL implementation of every store: cluster mode, several nodes on one database.

The same contracts as ``persistence/sqlite.py``, kept by the same means: a partial
unique index allows one active exclusive job (one download at a time, cluster-wide),
unique indexes keep file names and image versions unique, a job's writes name its
owner, and a claim is one transaction (``SELECT … FOR UPDATE SKIP LOCKED``: two
claimers never wait for each other, and never take the same row). Connections come from
a ``psycopg_pool.ConnectionPool``; every statement runs in a transaction of its own at
READ COMMITTED, which is what each compare-and-set here needs (the ``WHERE`` of an
``UPDATE`` is re-checked on the row it locks).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from swdepot.errors import database_unreachable
from swdepot.jobs.model import ACTIVE_STATES, Job, JobKind, JobState, Progress
from swdepot.jobs.store import LeaseLost, SlotTaken
from swdepot.nodes import NodeRecord
from swdepot.packages.model import PackageKind
from swdepot.persistence.migrations import POSTGRES, migrate_postgres
from swdepot.persistence.rows import (
    job_from_row,
    node_from_row,
    package_from_row,
    users_fingerprint,
)
from swdepot.persistence.stores import redact
from swdepot.repository.catalog import DuplicateName, DuplicateVersion, PackageRecord
from swdepot.software.update import ProfileState

_ACTIVE = list(str(s) for s in ACTIVE_STATES)
_CLAIMABLE = ["queued", "running"]  # nothing here pauses; a paused job stays with its owner


class DatabaseUnreachable(OSError):
    """No connection to the database could be made."""


#: SQLSTATEs of a lost server: connection exceptions (class 08) and the server shutting
#: down, crashed or starting (57P01 to 57P03)
_SERVER_GONE = ("08", "57P01", "57P02", "57P03")


def _server_gone(exc: psycopg.Error) -> bool:
    """The error says the server cannot be reached (a lost connection has no SQLSTATE),
    not that a statement was refused."""
    return isinstance(exc, PoolTimeout) or exc.sqlstate is None or exc.sqlstate.startswith(
        _SERVER_GONE)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PgDatabase:
    """A pool of connections to one PostgreSQL database, its schema migrated on open."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8,
                 connect_timeout: float = 5.0, wait_timeout: float = 3.0) -> None:
        """Raises :class:`DatabaseUnreachable` (before any pool or schema exists) when no
        connection can be made within ``connect_timeout`` seconds.

        Afterwards the pool checks each connection as it lends it (one lost with a server
        restart is replaced, not handed out) and reconnects by itself, on demand: a failed
        reconnect is retried with backoff for ``wait_timeout`` seconds only, then given up
        until a transaction asks again (the pool's own backoff grows without bound and
        kept a node away for tens of seconds after a restart); a transaction that
        gets no working connection within ``wait_timeout`` seconds, or loses it, raises
        :class:`~swdepot.errors.Unavailable`.
        """
        self.url = url
        self.wait_timeout = wait_timeout
        try:
            psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))).close()
        except psycopg.Error as exc:
            raise DatabaseUnreachable(
                f"cannot reach the database {redact(url)}: {_first_line(exc)}") from None
        self._pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True,
                                    kwargs={"row_factory": dict_row, "autocommit": True,
                                            "connect_timeout": max(1, round(connect_timeout))},
                                    check=ConnectionPool.check_connection, name="swdepot",
                                    reconnect_timeout=max(wait_timeout, 1.0))
        try:
            with self._pool.connection() as conn:
                migrate_postgres(conn, POSTGRES)
        except BaseException:
            self._pool.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a pooled connection; rolled back if the block raises.

        Raises :class:`~swdepot.errors.Unavailable` when the server cannot be reached
        (whether a commit under way when the connection broke took effect is unknown, as
        with any lost connection)."""
        try:
            with self._pool.connection(timeout=self.wait_timeout) as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            if not _server_gone(exc):
                raise
            raise database_unreachable() from exc

    def close(self) -> None:
        self._pool.close()


def _owned_by(owner: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause (and its argument) that limits a write to ``owner``'s row."""
    return ("", ()) if owner is None else (" AND owner = %s", (owner,))


class PgJobStore:
    """:class:`swdepot.jobs.store.JobStore` on PostgreSQL."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def insert(self, job: Job, *, exclusive: bool = False, owner: str | None = None,
               lease_until: float | None = None) -> None:
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO jobs (uuid, kind, description, state, message, code,"
                    " created_at, start_time, end_time, node, target, exclusive, params, owner,"
                    " lease_until) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (job.uuid, str(job.kind), job.description, str(job.state), job.message,
                     job.code, job.created_at, job.start_time, job.end_time, job.node,
                     job.target, exclusive, Jsonb(job.params), owner, lease_until),
                )
        except psycopg.errors.UniqueViolation as exc:
            raise SlotTaken(job.kind) from exc

    def _one(self, query: str, args: tuple[Any, ...]) -> Job | None:
        with self._db.transaction() as conn:
            row = conn.execute(query, args).fetchone()
        return job_from_row(row) if row else None

    def get(self, uuid: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE uuid = %s", (uuid,))

    def list(self, *, visible_after: float) -> list[Job]:
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE end_time IS NULL OR end_time >= %s"
                                " ORDER BY created_at", (visible_after,)).fetchall()
        return [job_from_row(r) for r in rows]

    def latest(self, kind: JobKind) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE kind = %s ORDER BY created_at DESC LIMIT 1",
                         (str(kind),))

    def active(self, kind: JobKind) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE kind = %s AND state = ANY(%s)"
                         " ORDER BY created_at DESC LIMIT 1", (str(kind), _ACTIVE))

    def transition(
        self, uuid: str, state: JobState, message: str, code: int = 0,
        *, start_time: float | None = None, end_time: float | None = None,
        owner: str | None = None,
    ) -> None:
        sets = ["state = %s", "message = %s", "code = %s"]
        args: list[Any] = [str(state), message, code]
        if start_time is not None:
            sets.append("start_time = %s")
            args.append(start_time)
        if end_time is not None:
            sets.append("end_time = %s")
            args.append(end_time)
        if state.terminal:  # an ended job has no owner, and keeps no secret
            sets += ["owner = NULL", "lease_until = NULL", "params = params - 'secret'"]
        where, guard = _owned_by(owner)
        with self._db.transaction() as conn:
            cur = conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE uuid = %s{where}",
                               (*args, uuid, *guard))
            if owner is not None and cur.rowcount == 0:
                raise LeaseLost(uuid)

    def set_progress(self, uuid: str, message: str | None, progress: Progress, *,
                     owner: str | None = None) -> None:
        where, guard = _owned_by(owner)
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET message = COALESCE(%s, message), bytes_done = %s,"
                " bytes_total = %s, speed = %s WHERE uuid = %s AND state = ANY(%s)" + where,
                (message, progress.bytes_done, progress.bytes_total, progress.speed, uuid,
                 _ACTIVE, *guard),
            )

    def claim(self, owner: str, node: str, kinds: Collection[JobKind], now: float,
              lease_until: float) -> Job | None:
        if not kinds:
            return None
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT uuid FROM jobs WHERE state = ANY(%s) AND kind = ANY(%s)"
                " AND (owner IS NULL OR lease_until IS NULL OR lease_until < %s"
                "      OR (node = %s AND owner != %s))"
                " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                (_CLAIMABLE, [str(k) for k in kinds], now, node, owner)).fetchone()
            if row is None:
                return None
            claimed = conn.execute(
                "UPDATE jobs SET owner = %s, node = %s, lease_until = %s WHERE uuid = %s"
                " RETURNING *", (owner, node, lease_until, row["uuid"])).fetchone()
        return job_from_row(claimed) if claimed else None

    def renew(self, owner: str, lease_until: float) -> set[str]:
        with self._db.transaction() as conn:
            rows = conn.execute("UPDATE jobs SET lease_until = %s WHERE owner = %s"
                                " AND state = ANY(%s) RETURNING uuid",
                                (lease_until, owner, _ACTIVE)).fetchall()
        return {r["uuid"] for r in rows}

    def release(self, uuid: str, owner: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE jobs SET owner = NULL, lease_until = NULL"
                         " WHERE uuid = %s AND owner = %s AND state = ANY(%s)",
                         (uuid, owner, _ACTIVE))

    def request_cancel(self, uuid: str) -> bool:
        with self._db.transaction() as conn:
            cur = conn.execute("UPDATE jobs SET cancel_requested = TRUE"
                               " WHERE uuid = %s AND state = ANY(%s)", (uuid, _ACTIVE))
            return cur.rowcount == 1

    def cancel_requests(self, owner: str) -> set[str]:
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT uuid FROM jobs WHERE owner = %s AND cancel_requested"
                                " AND state = ANY(%s)", (owner, _ACTIVE)).fetchall()
        return {r["uuid"] for r in rows}

    def save_checkpoint(self, uuid: str, owner: str, checkpoint: dict[str, Any]) -> None:
        with self._db.transaction() as conn:
            cur = conn.execute("UPDATE jobs SET checkpoint = %s WHERE uuid = %s AND owner = %s"
                               " AND state = ANY(%s)", (Jsonb(checkpoint), uuid, owner, _ACTIVE))
            if cur.rowcount == 0:
                raise LeaseLost(uuid)

    def purge(self, ended_before: float) -> int:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM jobs WHERE end_time IS NOT NULL AND end_time < %s AND uuid NOT IN"
                " (SELECT uuid FROM jobs j WHERE created_at ="
                "  (SELECT MAX(created_at) FROM jobs k WHERE k.kind = j.kind))",
                (ended_before,))
            return cur.rowcount


class PgPackageCatalog:
    """:class:`swdepot.repository.catalog.PackageCatalog` on PostgreSQL."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def add(self, record: PackageRecord) -> None:
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO packages (id, version, file_name, kind, size, sha256,"
                    " create_time, store_key, product, signer)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (record.id, record.version, record.file_name, str(record.kind),
                     record.size, record.sha256, record.create_time, record.store_key,
                     record.product, record.signer),
                )
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "one_image_per_version":
                raise DuplicateVersion(record.version) from exc
            raise DuplicateName(record.file_name) from exc

    def remove(self, record_id: str) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM packages WHERE id = %s",
                                (record_id,)).rowcount > 0

    def _one(self, query: str, args: tuple[Any, ...]) -> PackageRecord | None:
        with self._db.transaction() as conn:
            row = conn.execute(query, args).fetchone()
        return package_from_row(row) if row else None

    def by_version(self, version: str) -> PackageRecord | None:
        return self._one("SELECT * FROM packages WHERE version = %s AND kind = 'image'",
                         (version,))

    def by_id(self, record_id: str) -> PackageRecord | None:
        return self._one("SELECT * FROM packages WHERE id = %s", (record_id,))

    def by_file_name(self, file_name: str) -> PackageRecord | None:
        return self._one("SELECT * FROM packages WHERE file_name = %s", (file_name,))

    def all(self, kind: PackageKind | None = None) -> list[PackageRecord]:
        with self._db.transaction() as conn:
            if kind is None:
                rows = conn.execute("SELECT * FROM packages ORDER BY create_time").fetchall()
            else:
                rows = conn.execute("SELECT * FROM packages WHERE kind = %s"
                                    " ORDER BY create_time", (str(kind),)).fetchall()
        return [package_from_row(r) for r in rows]


class PgFailureLog:
    """:class:`swdepot.loginlimit.FailureLog` on PostgreSQL (every node of the cluster)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def add(self, address: str, at: float, forget_before: float) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM login_failures WHERE at < %s", (forget_before,))
            conn.execute("INSERT INTO login_failures (address, at) VALUES (%s, %s)",
                         (address, at))

    def since(self, address: str, cutoff: float) -> list[float]:
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT at FROM login_failures WHERE address = %s AND at > %s"
                                " ORDER BY at", (address, cutoff)).fetchall()
        return [float(r["at"]) for r in rows]

    def clear(self, address: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM login_failures WHERE address = %s", (address,))


class PgUserStore:
    """:class:`swdepot.auth.UserStore` on PostgreSQL: names, password hashes and roles."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def get(self, name: str) -> tuple[str, str] | None:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT password_hash, role FROM users WHERE name = %s",
                               (name,)).fetchone()
        return (row["password_hash"], row["role"]) if row else None

    def all(self) -> list[tuple[str, str]]:
        """(name, role) of every user; hashes stay in the database."""
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT name, role FROM users ORDER BY name").fetchall()
        return [(row["name"], row["role"]) for row in rows]

    def delete(self, name: str) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM users WHERE name = %s", (name,)).rowcount > 0

    def fingerprint(self) -> str:
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT name, password_hash, role FROM users ORDER BY name"
                                ).fetchall()
        return users_fingerprint((r["name"], r["password_hash"], r["role"]) for r in rows)

    def put(self, name: str, password_hash: str, role: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO users (name, password_hash, role) VALUES (%s,%s,%s)"
                " ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
                " role = EXCLUDED.role", (name, password_hash, role))


class PgProfileStore:
    """:class:`swdepot.software.update.ProfileStore` on PostgreSQL: one row, a revision."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def load(self) -> tuple[ProfileState, int]:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT doc, revision FROM cluster_profile WHERE id = 1"
                               ).fetchone()
        if row is None:
            return ProfileState(), 0
        return ProfileState.from_json(dict(row["doc"])), int(row["revision"])

    def save(self, state: ProfileState, revision: int) -> bool:
        doc = Jsonb(state.to_json())
        with self._db.transaction() as conn:
            if revision == 0:
                cur = conn.execute("INSERT INTO cluster_profile (id, doc, revision)"
                                   " VALUES (1, %s, 1) ON CONFLICT (id) DO NOTHING", (doc,))
            else:
                cur = conn.execute("UPDATE cluster_profile SET doc = %s,"
                                   " revision = revision + 1 WHERE id = 1 AND revision = %s",
                                   (doc, revision))
            return cur.rowcount == 1


class PgLeases:
    """:class:`swdepot.leases.Leases` on PostgreSQL: one row per lease name."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def acquire(self, name: str, holder: str, node: str, now: float, until: float) -> bool:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO leases (name, holder, node, until) VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder,"
                " node = EXCLUDED.node, until = EXCLUDED.until"
                " WHERE leases.holder = EXCLUDED.holder OR leases.until < %s"
                " OR leases.node = EXCLUDED.node",
                (name, holder, node, until, now))
            return cur.rowcount == 1


class PgNodeStore:
    """:class:`swdepot.nodes.NodeStore` on PostgreSQL."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def join(self, name: str, new_uuid: str, now: float, address: str, *,
             silent_before: float) -> NodeRecord | None:
        with self._db.transaction() as conn:
            row = conn.execute(
                "INSERT INTO nodes (name, uuid, started_at, heartbeat_at, address, joined_at)"
                " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (name) DO UPDATE SET"
                " started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,"
                " address = EXCLUDED.address WHERE nodes.heartbeat_at < %s RETURNING *",
                (name, new_uuid, now, now, address, now, silent_before)).fetchone()
        return node_from_row(row) if row is not None else None

    def heartbeat(self, name: str, now: float) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE nodes SET heartbeat_at = %s WHERE name = %s", (now, name))

    def leave(self, name: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE nodes SET heartbeat_at = 0 WHERE name = %s", (name,))

    def all(self) -> list[NodeRecord]:
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT * FROM nodes ORDER BY joined_at, name").fetchall()
        return [node_from_row(r) for r in rows]
