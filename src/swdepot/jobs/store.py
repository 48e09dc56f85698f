"""The narrow interface jobs are persisted through.

The embedded default is SQLite (:mod:`swdepot.persistence.sqlite`); a multi-node
deployment would implement the same protocol on PostgreSQL. Every rule that must
hold across processes ("one download at a time") is enforced by the store itself,
never by a lock in this process.
"""

from __future__ import annotations

from typing import Protocol

from swdepot.jobs.model import Job, JobKind, JobState, Progress


class SlotTaken(Exception):
    """Another job of an exclusive kind is already active."""


class JobStore(Protocol):
    def insert(self, job: Job, *, exclusive: bool = False) -> None:
        """Store a new job; with ``exclusive`` raise :class:`SlotTaken` when another
        job of the same kind is queued, running or paused."""

    def get(self, uuid: str) -> Job | None: ...

    def list(self, *, visible_after: float) -> list[Job]:
        """Active jobs, plus finished jobs that ended after ``visible_after``."""

    def latest(self, kind: JobKind) -> Job | None:
        """The most recently created job of a kind, however old."""

    def active(self, kind: JobKind) -> Job | None: ...

    def transition(
        self, uuid: str, state: JobState, message: str, code: int = 0,
        *, start_time: float | None = None, end_time: float | None = None,
    ) -> None: ...

    def set_progress(self, uuid: str, message: str | None, progress: Progress) -> None: ...

    def fail_active(self, message: str, code: int, now: float, *, node: str) -> int:
        """End the node's non-terminal jobs as failed (after it restarted); how many."""

    def purge(self, ended_before: float) -> int:
        """Delete jobs that ended before the cutoff, keeping the latest of each kind."""
