"""ONTAP's job object as a plain data type, free of HTTP and SQL."""

from __future__ import annotations

import functools
import time
import uuid as uuidlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """ONTAP's job states; ``queued``/``running``/``paused`` are not terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCESS = "success"
    FAILURE = "failure"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCESS, JobState.FAILURE)


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


class JobKind(StrEnum):
    """What a job does; the store uses it to keep one download at a time."""

    DOWNLOAD = "download"
    UPLOAD = "upload"
    SOFTWARE = "software"  # PATCH /api/cluster/software: validate, update, pause/resume/cancel
    DELETE_PACKAGE = "delete_package"


@functools.lru_cache(maxsize=1024)
def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as ONTAP's ISO-8601 date-time (with offset).

    Remembered: a polled job renders the same two instants thousands of times, and
    formatting one costs more than the rest of the job's record together.
    """
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Progress:
    """Byte progress of a transfer, shown as extra fields to clients that want it."""

    bytes_done: int = 0
    bytes_total: int | None = None
    speed: float = 0.0  # bytes per second, smoothed


@dataclass(frozen=True)
class Job:
    """One asynchronous operation, as ONTAP's ``/api/cluster/jobs`` shows it."""

    uuid: str
    kind: JobKind
    description: str
    state: JobState = JobState.QUEUED
    message: str = "Job queued"
    code: int = 0
    created_at: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    node: str = ""
    progress: Progress = field(default_factory=Progress)
    target: str | None = None  # what the job acts on (a URL without secrets, a version)
    # What whoever runs the job (again, after its process died) needs to know: JSON values,
    # never a secret in clear text (``params["secret"]`` holds sealed ones and is wiped
    # when the job ends). Not part of ONTAP's job object.
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    # The engine's bookkeeping (jobs/engine.py), not shown to ONTAP clients: the process
    # that runs the job and until when its lease holds, whether it holds its kind's
    # exclusive slot, whether a cancel was asked for, and what a process taking it over
    # may reuse (the checkpoint, written by the owner as the work goes on).
    owner: str | None = field(default=None, compare=False)
    lease_until: float | None = field(default=None, compare=False)
    exclusive: bool = field(default=False, compare=False)
    cancel_requested: bool = field(default=False, compare=False)
    checkpoint: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def new(cls, kind: JobKind, description: str, *, node: str, target: str | None = None,
            params: dict[str, Any] | None = None) -> Job:
        return cls(uuid=str(uuidlib.uuid4()), kind=kind, description=description, node=node,
                   target=target, params=params or {})

    def with_changes(self, **changes: Any) -> Job:
        return replace(self, **changes)

    def shown_target(self) -> str | None:
        """What the job acts on, as every user may see it (swdepot's ``target`` field): a
        download's URL without its query or fragment (they may carry a signed URL's token;
        the user information was never kept), an upload's file name, a deleted version."""
        if self.target is None or self.kind is JobKind.SOFTWARE:
            return None
        if self.kind is JobKind.DOWNLOAD:
            return self.target.split("#", 1)[0].split("?", 1)[0]
        return self.target

    def to_ontap(self) -> dict[str, Any]:
        """The full ONTAP job object (``error`` only on failure, as since ONTAP 9.9)."""
        body: dict[str, Any] = {
            "uuid": self.uuid,
            "description": self.description,
            "state": str(self.state),
            "message": self.message,
            "code": self.code,
        }
        if self.start_time is not None:
            body["start_time"] = iso(self.start_time)
        if self.end_time is not None:
            body["end_time"] = iso(self.end_time)
        if self.state is JobState.FAILURE:
            body["error"] = {"code": str(self.code), "message": self.message}
        if self.node:
            body["node"] = {"name": self.node}
        shown = self.shown_target()
        if shown is not None:
            body["target"] = shown
        body["_links"] = {"self": {"href": f"/api/cluster/jobs/{self.uuid}"}}
        return body
