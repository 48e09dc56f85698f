"""Every store the service uses, opened on the engine the settings name.

``database`` unset: SQLite in the data directory (the embedded default, one file).
``postgresql://USER@HOST:PORT/DBNAME``: PostgreSQL (cluster mode; several nodes share
it). Nothing above this module knows which engine it got: both implement the same
interfaces, with the same rules held by the schema (``persistence/migrations.py``).
psycopg is imported only for a PostgreSQL URL, so the default pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from swdepot.auth import UserStore
from swdepot.config import Settings
from swdepot.jobs.store import JobStore
from swdepot.leases import Leases
from swdepot.loginlimit import FailureLog
from swdepot.nodes import NodeStore
from swdepot.repository.catalog import PackageCatalog
from swdepot.software.update import ProfileStore

SCHEMES = ("postgresql", "postgres")


class BadDatabaseUrl(ValueError):
    """The ``database`` setting is no URL swdepot can open."""


@dataclass(frozen=True)
class Stores:
    """The stores of one database, and how to close it."""

    engine: str  # "sqlite" or "postgresql"
    jobs: JobStore
    catalog: PackageCatalog
    users: UserStore
    profile: ProfileStore
    leases: Leases
    nodes: NodeStore
    logins: FailureLog
    close: Callable[[], None]


def check_url(url: str) -> str:
    """``url`` if it names a PostgreSQL database, else :class:`BadDatabaseUrl`."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname or not parts.path.strip("/"):
        raise BadDatabaseUrl(f"--database must be postgresql://USER@HOST:PORT/DBNAME, not "
                             f"{redact(url)!r}")
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def open_stores(settings: Settings) -> Stores:
    """Open (and migrate) the database the settings name."""
    if settings.database is None:
        from swdepot.persistence.sqlite import (
            Database,
            SqliteFailureLog,
            SqliteJobStore,
            SqliteLeases,
            SqliteNodeStore,
            SqlitePackageCatalog,
            SqliteProfileStore,
            SqliteUserStore,
        )

        db = Database(settings.database_path)
        return Stores("sqlite", SqliteJobStore(db), SqlitePackageCatalog(db),
                      SqliteUserStore(db), SqliteProfileStore(db), SqliteLeases(db),
                      SqliteNodeStore(db), SqliteFailureLog(db), db.close)
    from swdepot.persistence.postgres import (
        PgDatabase,
        PgFailureLog,
        PgJobStore,
        PgLeases,
        PgNodeStore,
        PgPackageCatalog,
        PgProfileStore,
        PgUserStore,
    )

    pg = PgDatabase(check_url(settings.database))
    return Stores("postgresql", PgJobStore(pg), PgPackageCatalog(pg), PgUserStore(pg),
                  PgProfileStore(pg), PgLeases(pg), PgNodeStore(pg), PgFailureLog(pg), pg.close)
