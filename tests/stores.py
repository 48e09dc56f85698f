"""A real job store that counts the reads reaching it, for tests about what is cached."""

from __future__ import annotations

from swdepot.jobs.model import Job, JobKind
from swdepot.persistence.sqlite import SqliteJobStore


class CountingStore:
    """The real store, counting the reads (``get`` and ``latest``) that reach it."""

    def __init__(self, inner: SqliteJobStore) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def get(self, uuid: str) -> Job | None:
        self.reads += 1
        return self.inner.get(uuid)

    def latest(self, kind: JobKind) -> Job | None:
        self.reads += 1
        return self.inner.latest(kind)
