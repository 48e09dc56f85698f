"""ONTAP's job object as a plain data type, free of HTTP, REST shapes and SQL
(``api/views/jobs.py`` shows it)."""

from __future__ import annotations

import time
import uuid as uuidlib
from dataclasses import dataclass, field, replace
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
