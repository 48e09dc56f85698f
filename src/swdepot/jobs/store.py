"""The narrow interface jobs are persisted through.

The embedded default is SQLite (:mod:`swdepot.persistence.sqlite`); a multi-node
deployment implements the same protocol on PostgreSQL. Every rule that must hold across
processes is enforced by the store itself, never by a lock in this process:

- *one download at a time*: an exclusive job holds its kind's slot while it is active;
- *one owner per job*: a job row is claimed atomically (:meth:`JobStore.claim`; on SQLite
  one ``BEGIN IMMEDIATE`` transaction, on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED``)
  and the owner's writes carry its name, so a process whose lease was taken over can no
  longer change the row (:class:`LeaseLost`);
- *a lease that expires*: the owner renews ``lease_until``; once it has passed, or once
  the owner is a dead earlier process of the claiming node (the node lock proves that),
  any worker may claim the job again and take it over.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from swdepot.jobs.model import Job, JobKind, JobState, Progress


class SlotTaken(Exception):
    """Another job of an exclusive kind is already active."""


class LeaseLost(Exception):
    """The job is no longer this owner's: its lease expired and another process took it."""


class JobStore(Protocol):
    def insert(self, job: Job, *, exclusive: bool = False, owner: str | None = None,
               lease_until: float | None = None) -> None:
        """Store a new job; with ``exclusive`` raise :class:`SlotTaken` when another
        job of the same kind is queued, running or paused. With ``owner`` the job is
        claimed by it from the start (its lease until ``lease_until``); without, it waits
        for a worker to :meth:`claim` it."""

    def get(self, uuid: str) -> Job | None: ...

    def list(self, *, visible_after: float) -> list[Job]:
        """Active jobs, plus finished jobs that ended after ``visible_after``."""

    def latest(self, kind: JobKind) -> Job | None:
        """The most recently created job of a kind, however old."""

    def active(self, kind: JobKind) -> Job | None: ...

    def transition(
        self, uuid: str, state: JobState, message: str, code: int = 0,
        *, start_time: float | None = None, end_time: float | None = None,
        owner: str | None = None,
    ) -> None:
        """Change a job's state. With ``owner``, only while the job is still that owner's
        (else :class:`LeaseLost`); a terminal state frees the row of its owner and wipes
        ``params["secret"]``."""

    def set_progress(self, uuid: str, message: str | None, progress: Progress, *,
                     owner: str | None = None) -> None: ...

    def claim(self, owner: str, node: str, kinds: Collection[JobKind], now: float,
              lease_until: float) -> Job | None:
        """Atomically take one job of ``kinds`` that nobody runs: queued and unclaimed, or
        active with an expired lease, or active and owned by another (dead) process of
        ``node``. The oldest first; None if there is none."""

    def renew(self, owner: str, lease_until: float) -> set[str]:
        """Extend the lease of every active job ``owner`` holds; the uuids it still holds."""

    def release(self, uuid: str, owner: str) -> None:
        """Give an active job up (this process is stopping): any worker may claim it now."""

    def request_cancel(self, uuid: str) -> bool:
        """Record that the job should stop; False if it is not active (any more)."""

    def cancel_requests(self, owner: str) -> set[str]:
        """The uuids of ``owner``'s active jobs that somebody asked to cancel."""

    def save_checkpoint(self, uuid: str, owner: str, checkpoint: dict[str, Any]) -> None:
        """Record what a process taking the job over may reuse; :class:`LeaseLost` if the
        job is no longer ``owner``'s."""

    def purge(self, ended_before: float) -> int:
        """Delete jobs that ended before the cutoff, keeping the latest of each kind."""
