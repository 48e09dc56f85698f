"""The schema of both engines, as numbered migrations the service applies itself.

Each engine has a list of scripts; script *n* (from 1) takes a database from schema
version *n - 1* to *n*. SQLite keeps the version in ``PRAGMA user_version``, PostgreSQL
in the one-row table ``schema_version``. A service opening a database applies every
script it has that the database has not had, in one transaction, and refuses a
database migrated by a newer swdepot than itself (rather than guess at its columns).
Two nodes that start at once on one PostgreSQL database take turns: the migration
holds a transaction-scoped advisory lock.

To change the schema: append a script to both lists (never edit one that shipped),
and say in ``docs/operations.md`` what it does to a running cluster.
"""

from __future__ import annotations

import sqlite3
from typing import Any

SQLITE: tuple[str, ...] = (
    # 1: the schema as of the durable job engine (jobs with owners, leases, checkpoints)
    """
CREATE TABLE IF NOT EXISTS jobs (
    uuid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    code INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    node TEXT NOT NULL DEFAULT '',
    target TEXT,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER,
    speed REAL NOT NULL DEFAULT 0,
    exclusive INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    lease_until REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs(owner) WHERE owner IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS one_active_exclusive_job ON jobs(kind)
    WHERE exclusive = 1 AND state IN ('queued', 'running', 'paused');
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs(end_time);
-- latest()/active() run on every GET /cluster/software/download: an index, not a sort
CREATE INDEX IF NOT EXISTS jobs_by_kind_created ON jobs(kind, created_at);
CREATE TABLE IF NOT EXISTS packages (
    id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    file_name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    create_time REAL NOT NULL,
    store_key TEXT NOT NULL,
    product TEXT,
    signer TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_image_per_version ON packages(version)
    WHERE kind = 'image';
CREATE TABLE IF NOT EXISTS cluster_profile (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    doc TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    node TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL
);
""",
    # 2: the nodes that joined the cluster (nodes.py)
    """
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    joined_at REAL NOT NULL
);
""",
    # 3: failed logins, per client address, for every node's lockout (loginlimit.py)
    """
CREATE TABLE login_failures (
    address TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX login_failures_by_address ON login_failures (address, at);
CREATE INDEX login_failures_by_time ON login_failures (at);
""",
)

POSTGRES: tuple[str, ...] = (
    # 1: the same schema as SQLite's 1, in PostgreSQL's types (JSONB, BOOLEAN, BIGINT)
    """
CREATE TABLE IF NOT EXISTS jobs (
    uuid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    code BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    start_time DOUBLE PRECISION,
    end_time DOUBLE PRECISION,
    node TEXT NOT NULL DEFAULT '',
    target TEXT,
    bytes_done BIGINT NOT NULL DEFAULT 0,
    bytes_total BIGINT,
    speed DOUBLE PRECISION NOT NULL DEFAULT 0,
    exclusive BOOLEAN NOT NULL DEFAULT FALSE,
    params JSONB NOT NULL DEFAULT '{}',
    owner TEXT,
    lease_until DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    checkpoint JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs(owner) WHERE owner IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS one_active_exclusive_job ON jobs(kind)
    WHERE exclusive AND state IN ('queued', 'running', 'paused');
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs(end_time);
CREATE INDEX IF NOT EXISTS jobs_by_kind_created ON jobs(kind, created_at);
CREATE TABLE IF NOT EXISTS packages (
    id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    file_name TEXT NOT NULL CONSTRAINT one_package_per_file_name UNIQUE,
    kind TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    create_time DOUBLE PRECISION NOT NULL,
    store_key TEXT NOT NULL,
    product TEXT,
    signer TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_image_per_version ON packages(version)
    WHERE kind = 'image';
CREATE TABLE IF NOT EXISTS cluster_profile (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    doc JSONB NOT NULL,
    revision BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    node TEXT NOT NULL,
    until DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL
);
""",
    # 2: the nodes that joined the cluster (nodes.py)
    """
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    joined_at DOUBLE PRECISION NOT NULL
);
""",
    # 3: failed logins, per client address, for every node's lockout (loginlimit.py)
    """
CREATE TABLE login_failures (
    address TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX login_failures_by_address ON login_failures (address, at);
CREATE INDEX login_failures_by_time ON login_failures (at);
""",
)

# Columns added before migrations were numbered: (table, column, definition). A SQLite
# database at version 0 that already has tables was made by such a swdepot: it gets
# them first (ADD COLUMN with a default rewrites no row), then script 1, whose
# ``IF NOT EXISTS`` leaves the rest as it is.
_UNNUMBERED = (
    ("jobs", "params", "TEXT NOT NULL DEFAULT '{}'"),
    ("jobs", "owner", "TEXT"),
    ("jobs", "lease_until", "REAL"),
    ("jobs", "cancel_requested", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "checkpoint", "TEXT NOT NULL DEFAULT '{}'"),
)
_ADVISORY_KEY = 0x5D7E_0F00  # any constant: the lock every migrating swdepot takes


class SchemaTooNew(Exception):
    """The database was migrated by a newer swdepot than this one."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(f"the database has schema version {found}, newer than this "
                         f"swdepot knows ({known}): run the newer swdepot, or a copy of "
                         "the database from before it was upgraded")


def migrate_sqlite(conn: sqlite3.Connection, scripts: tuple[str, ...] = SQLITE) -> int:
    """Bring the database to the latest version; the version it had. ``conn`` is in
    autocommit mode; the migration is one ``BEGIN IMMEDIATE`` transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > len(scripts):
            raise SchemaTooNew(found, len(scripts))
        if found == 0:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, column, definition in _UNNUMBERED:
                columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                if table in tables and column not in columns:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        for version in range(found + 1, len(scripts) + 1):
            for statement in _statements(scripts[version - 1]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(scripts)}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def migrate_postgres(conn: Any, scripts: tuple[str, ...] = POSTGRES) -> int:
    """The same for PostgreSQL (``conn``: a psycopg connection in autocommit mode)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        found = 0 if row is None else int(row["version"] if isinstance(row, dict) else row[0])
        if found > len(scripts):
            raise SchemaTooNew(found, len(scripts))
        for version in range(found + 1, len(scripts) + 1):
            for statement in _statements(scripts[version - 1]):
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(scripts),))
        else:
            conn.execute("UPDATE schema_version SET version = %s", (len(scripts),))
    return found


def _statements(script: str) -> list[str]:
    """A script's statements (none of them holds a semicolon inside a literal)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
