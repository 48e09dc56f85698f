"""SQLite implementation of the job store and the package catalog.

WAL with ``synchronous=FULL``: readers never wait for writers and a committed row
survives a power cut. The schema is ``persistence/migrations.py``'s, versioned in
``PRAGMA user_version``. Each thread gets its own connection (sqlite3 objects must not
be shared across threads). Cross-process rules live in the schema: a partial unique
index allows one active download, unique indexes keep file names and image versions
unique.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swdepot.jobs.model import ACTIVE_STATES, Job, JobKind, JobState, Progress
from swdepot.jobs.store import LeaseLost, SlotTaken
from swdepot.nodes import NodeRecord
from swdepot.packages.model import PackageKind
from swdepot.persistence.migrations import migrate_sqlite
from swdepot.persistence.rows import (
    job_from_row,
    node_from_row,
    package_from_row,
    users_fingerprint,
)
from swdepot.repository.catalog import DuplicateName, DuplicateVersion, PackageRecord
from swdepot.software.update import ProfileState

_ACTIVE = tuple(str(s) for s in ACTIVE_STATES)
_CLAIMABLE = ("queued", "running")  # nothing here pauses; a paused job stays with its owner


class Database:
    """One SQLite file; hands out a connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        migrate_sqlite(self.connection())

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=10.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` so check-then-write sequences cannot interleave."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def _owned_by(owner: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause (and its argument) that limits a write to ``owner``'s row."""
    return ("", ()) if owner is None else (" AND owner = ?", (owner,))


class SqliteJobStore:
    """:class:`swdepot.jobs.store.JobStore` on SQLite."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def insert(self, job: Job, *, exclusive: bool = False, owner: str | None = None,
               lease_until: float | None = None) -> None:
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO jobs (uuid, kind, description, state, message, code, created_at,"
                    " start_time, end_time, node, target, exclusive, params, owner, lease_until)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (job.uuid, str(job.kind), job.description, str(job.state), job.message,
                     job.code, job.created_at, job.start_time, job.end_time, job.node,
                     job.target, int(exclusive), json.dumps(job.params), owner, lease_until),
                )
        except sqlite3.IntegrityError as exc:
            raise SlotTaken(job.kind) from exc

    def get(self, uuid: str) -> Job | None:
        row = self._db.connection().execute("SELECT * FROM jobs WHERE uuid = ?",
                                            (uuid,)).fetchone()
        return job_from_row(row) if row else None

    def list(self, *, visible_after: float) -> list[Job]:
        rows = self._db.connection().execute(
            "SELECT * FROM jobs WHERE end_time IS NULL OR end_time >= ? ORDER BY created_at",
            (visible_after,),
        ).fetchall()
        return [job_from_row(r) for r in rows]

    def latest(self, kind: JobKind) -> Job | None:
        row = self._db.connection().execute(
            "SELECT * FROM jobs WHERE kind = ? ORDER BY created_at DESC LIMIT 1", (str(kind),)
        ).fetchone()
        return job_from_row(row) if row else None

    def active(self, kind: JobKind) -> Job | None:
        row = self._db.connection().execute(
            f"SELECT * FROM jobs WHERE kind = ? AND state IN {_ACTIVE} "
            "ORDER BY created_at DESC LIMIT 1", (str(kind),)
        ).fetchone()
        return job_from_row(row) if row else None

    def transition(
        self, uuid: str, state: JobState, message: str, code: int = 0,
        *, start_time: float | None = None, end_time: float | None = None,
        owner: str | None = None,
    ) -> None:
        sets = ["state = ?", "message = ?", "code = ?"]
        args: list[Any] = [str(state), message, code]
        if start_time is not None:
            sets.append("start_time = ?")
            args.append(start_time)
        if end_time is not None:
            sets.append("end_time = ?")
            args.append(end_time)
        if state.terminal:  # an ended job has no owner, and keeps no secret
            sets += ["owner = NULL", "lease_until = NULL",
                     "params = json_remove(params, '$.secret')"]
        where, guard = _owned_by(owner)
        with self._db.transaction() as conn:
            cur = conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE uuid = ?{where}",
                               (*args, uuid, *guard))
            if owner is not None and cur.rowcount == 0:
                raise LeaseLost(uuid)

    def set_progress(self, uuid: str, message: str | None, progress: Progress, *,
                     owner: str | None = None) -> None:
        where, guard = _owned_by(owner)
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET message = COALESCE(?, message), bytes_done = ?, bytes_total = ?,"
                f" speed = ? WHERE uuid = ? AND state IN {_ACTIVE}{where}",
                (message, progress.bytes_done, progress.bytes_total, progress.speed, uuid,
                 *guard),
            )

    def claim(self, owner: str, node: str, kinds: Collection[JobKind], now: float,
              lease_until: float) -> Job | None:
        if not kinds:
            return None
        marks = ",".join("?" * len(kinds))
        query = (f"SELECT uuid FROM jobs WHERE state IN {_CLAIMABLE} AND kind IN ({marks})"
                 " AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?"
                 "      OR (node = ? AND owner != ?))"
                 " ORDER BY created_at LIMIT 1")
        args = (*(str(k) for k in kinds), now, node, owner)
        # a plain read first: the keeper asks every second, and nearly always in vain
        if self._db.connection().execute(query, args).fetchone() is None:
            return None
        with self._db.transaction() as conn:  # BEGIN IMMEDIATE: no two claims interleave
            row = conn.execute(query, args).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE jobs SET owner = ?, node = ?, lease_until = ? WHERE uuid = ?",
                         (owner, node, lease_until, row["uuid"]))
            claimed = conn.execute("SELECT * FROM jobs WHERE uuid = ?",
                                   (row["uuid"],)).fetchone()
        return job_from_row(claimed)

    def renew(self, owner: str, lease_until: float) -> set[str]:
        with self._db.transaction() as conn:
            conn.execute(f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND state IN {_ACTIVE}",
                         (lease_until, owner))
            rows = conn.execute(f"SELECT uuid FROM jobs WHERE owner = ? AND state IN {_ACTIVE}",
                                (owner,)).fetchall()
        return {r["uuid"] for r in rows}

    def release(self, uuid: str, owner: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE jobs SET owner = NULL, lease_until = NULL"
                         f" WHERE uuid = ? AND owner = ? AND state IN {_ACTIVE}", (uuid, owner))

    def request_cancel(self, uuid: str) -> bool:
        with self._db.transaction() as conn:
            cur = conn.execute("UPDATE jobs SET cancel_requested = 1"
                               f" WHERE uuid = ? AND state IN {_ACTIVE}", (uuid,))
            return cur.rowcount == 1

    def cancel_requests(self, owner: str) -> set[str]:
        rows = self._db.connection().execute(
            "SELECT uuid FROM jobs WHERE owner = ? AND cancel_requested = 1"
            f" AND state IN {_ACTIVE}", (owner,)).fetchall()
        return {r["uuid"] for r in rows}

    def save_checkpoint(self, uuid: str, owner: str, checkpoint: dict[str, Any]) -> None:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET checkpoint = ? WHERE uuid = ? AND owner = ?"
                f" AND state IN {_ACTIVE}", (json.dumps(checkpoint), uuid, owner))
            if cur.rowcount == 0:
                raise LeaseLost(uuid)

    def purge(self, ended_before: float) -> int:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM jobs WHERE end_time IS NOT NULL AND end_time < ? AND uuid NOT IN"
                " (SELECT uuid FROM jobs j WHERE created_at ="
                "  (SELECT MAX(created_at) FROM jobs k WHERE k.kind = j.kind))",
                (ended_before,),
            )
            return cur.rowcount


class SqlitePackageCatalog:
    """:class:`swdepot.repository.catalog.PackageCatalog` on SQLite."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: PackageRecord) -> None:
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO packages (id, version, file_name, kind, size, sha256,"
                    " create_time, store_key, product, signer) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (record.id, record.version, record.file_name, str(record.kind), record.size,
                     record.sha256, record.create_time, record.store_key, record.product,
                     record.signer),
                )
        except sqlite3.IntegrityError as exc:
            if "file_name" in str(exc):
                raise DuplicateName(record.file_name) from exc
            raise DuplicateVersion(record.version) from exc

    def remove(self, record_id: str) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM packages WHERE id = ?", (record_id,)).rowcount > 0

    def by_version(self, version: str) -> PackageRecord | None:
        row = self._db.connection().execute(
            "SELECT * FROM packages WHERE version = ? AND kind = 'image'", (version,)
        ).fetchone()
        return package_from_row(row) if row else None

    def by_id(self, record_id: str) -> PackageRecord | None:
        row = self._db.connection().execute(
            "SELECT * FROM packages WHERE id = ?", (record_id,)).fetchone()
        return package_from_row(row) if row else None

    def by_file_name(self, file_name: str) -> PackageRecord | None:
        row = self._db.connection().execute(
            "SELECT * FROM packages WHERE file_name = ?", (file_name,)
        ).fetchone()
        return package_from_row(row) if row else None

    def all(self, kind: PackageKind | None = None) -> list[PackageRecord]:
        conn = self._db.connection()
        if kind is None:
            rows = conn.execute("SELECT * FROM packages ORDER BY create_time").fetchall()
        else:
            rows = conn.execute("SELECT * FROM packages WHERE kind = ? ORDER BY create_time",
                                (str(kind),)).fetchall()
        return [package_from_row(r) for r in rows]


class SqliteFailureLog:
    """:class:`swdepot.loginlimit.FailureLog` on SQLite (every process on the file)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, address: str, at: float, forget_before: float) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM login_failures WHERE at < ?", (forget_before,))
            conn.execute("INSERT INTO login_failures (address, at) VALUES (?, ?)",
                         (address, at))

    def since(self, address: str, cutoff: float) -> list[float]:
        rows = self._db.connection().execute(
            "SELECT at FROM login_failures WHERE address = ? AND at > ? ORDER BY at",
            (address, cutoff)).fetchall()
        return [float(r["at"]) for r in rows]

    def clear(self, address: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM login_failures WHERE address = ?", (address,))


class SqliteUserStore:
    """:class:`swdepot.auth.UserStore` on SQLite: names, password hashes and roles."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, name: str) -> tuple[str, str] | None:
        row = self._db.connection().execute(
            "SELECT password_hash, role FROM users WHERE name = ?", (name,)
        ).fetchone()
        return (row["password_hash"], row["role"]) if row else None

    def all(self) -> list[tuple[str, str]]:
        """(name, role) of every user; hashes stay in the database."""
        rows = self._db.connection().execute("SELECT name, role FROM users ORDER BY name")
        return [(row["name"], row["role"]) for row in rows]

    def delete(self, name: str) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def fingerprint(self) -> str:
        rows = self._db.connection().execute(
            "SELECT name, password_hash, role FROM users ORDER BY name").fetchall()
        return users_fingerprint((r["name"], r["password_hash"], r["role"]) for r in rows)

    def put(self, name: str, password_hash: str, role: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO users (name, password_hash, role) VALUES (?,?,?) ON CONFLICT(name)"
                " DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role",
                (name, password_hash, role),
            )


class SqliteProfileStore:
    """:class:`swdepot.software.update.ProfileStore` on SQLite: one JSON row and a revision."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> tuple[ProfileState, int]:
        row = self._db.connection().execute(
            "SELECT doc, revision FROM cluster_profile WHERE id = 1").fetchone()
        if row is None:
            return ProfileState(), 0
        return ProfileState.from_json(json.loads(row["doc"])), row["revision"]

    def save(self, state: ProfileState, revision: int) -> bool:
        doc = json.dumps(state.to_json())
        with self._db.transaction() as conn:
            if revision == 0:
                cur = conn.execute("INSERT OR IGNORE INTO cluster_profile (id, doc, revision)"
                                   " VALUES (1, ?, 1)", (doc,))
            else:
                cur = conn.execute("UPDATE cluster_profile SET doc = ?, revision = revision + 1"
                                   " WHERE id = 1 AND revision = ?", (doc, revision))
            return cur.rowcount == 1


class SqliteLeases:
    """:class:`swdepot.leases.Leases` on SQLite: one row per lease name."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def acquire(self, name: str, holder: str, node: str, now: float, until: float) -> bool:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO leases (name, holder, node, until) VALUES (?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET holder = excluded.holder,"
                " node = excluded.node, until = excluded.until"
                " WHERE leases.holder = excluded.holder OR leases.until < ?"
                " OR leases.node = excluded.node",
                (name, holder, node, until, now))
            return cur.rowcount == 1


class SqliteNodeStore:
    """:class:`swdepot.nodes.NodeStore` on SQLite."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def join(self, name: str, new_uuid: str, now: float, address: str, *,
             silent_before: float) -> NodeRecord | None:
        with self._db.transaction() as conn:
            joined = conn.execute(
                "INSERT INTO nodes (name, uuid, started_at, heartbeat_at, address, joined_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
                " address = excluded.address WHERE nodes.heartbeat_at < ?",
                (name, new_uuid, now, now, address, now, silent_before)).rowcount
            row = conn.execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone()
        return node_from_row(row) if joined else None

    def heartbeat(self, name: str, now: float) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE nodes SET heartbeat_at = ? WHERE name = ?", (now, name))

    def leave(self, name: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE nodes SET heartbeat_at = 0 WHERE name = ?", (name,))

    def all(self) -> list[NodeRecord]:
        rows = self._db.connection().execute(
            "SELECT * FROM nodes ORDER BY joined_at, name").fetchall()
        return [node_from_row(r) for r in rows]
