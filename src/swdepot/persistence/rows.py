"""Rows to domain values, the same for both engines.

A row is any mapping of column names (``sqlite3.Row``, psycopg's ``dict_row``). JSON
columns arrive as text from SQLite and already decoded from PostgreSQL's JSONB.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from swdepot.jobs.model import Job, JobKind, JobState, Progress
from swdepot.nodes import NodeRecord
from swdepot.packages.model import PackageKind
from swdepot.repository.catalog import PackageRecord


def document(value: Any) -> dict[str, Any]:
    """A JSON column's object, whichever engine it came from."""
    return dict(json.loads(value) if isinstance(value, (str, bytes)) else value)


def job_from_row(row: Mapping[str, Any]) -> Job:
    return Job(
        uuid=row["uuid"], kind=JobKind(row["kind"]), description=row["description"],
        state=JobState(row["state"]), message=row["message"], code=row["code"],
        created_at=row["created_at"], start_time=row["start_time"], end_time=row["end_time"],
        node=row["node"], target=row["target"],
        progress=Progress(row["bytes_done"], row["bytes_total"], row["speed"]),
        params=document(row["params"]), owner=row["owner"], lease_until=row["lease_until"],
        exclusive=bool(row["exclusive"]), cancel_requested=bool(row["cancel_requested"]),
        checkpoint=document(row["checkpoint"]),
    )


def package_from_row(row: Mapping[str, Any]) -> PackageRecord:
    return PackageRecord(
        id=row["id"], version=row["version"], file_name=row["file_name"],
        kind=PackageKind(row["kind"]), size=row["size"], sha256=row["sha256"],
        create_time=row["create_time"], store_key=row["store_key"], product=row["product"],
        signer=row["signer"],
    )


def node_from_row(row: Mapping[str, Any]) -> NodeRecord:
    return NodeRecord(name=row["name"], uuid=row["uuid"], started_at=row["started_at"],
                      heartbeat_at=row["heartbeat_at"], address=row["address"])


def users_fingerprint(rows: Iterable[tuple[str, str, str]]) -> str:
    """A digest of (name, password hash, role) rows in name order (UserStore.fingerprint)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, password_hash, role in rows:
        digest.update(f"{name}\0{password_hash}\0{role}\n".encode())
    return digest.hexdigest()
