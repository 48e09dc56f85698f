"""Follow a job to its end, as ONTAP's own clients do: poll, never block the server.

A snapshot pairs the job with the byte progress of the download status when that
status belongs to the same job, so one loop serves ``package get`` (bytes, speed),
``package delete`` and ``job watch`` (state and message only).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from swdepot.client.rest import SwdepotClient

TERMINAL = ("success", "failure")
POLL_INTERVAL = 0.5  # the service records progress every 0.5 s; faster polling shows nothing new


@dataclass(frozen=True)
class Snapshot:
    """One look at a job; ``bytes_*`` and ``speed`` are set while it transfers a package."""

    job: dict[str, Any]
    bytes_done: int | None = None
    bytes_total: int | None = None
    speed: float | None = None

    @property
    def finished(self) -> bool:
        return self.job.get("state") in TERMINAL

    @property
    def failed(self) -> bool:
        return self.job.get("state") == "failure"

    @property
    def eta(self) -> float | None:
        """Seconds left at the current speed, when the total size is known."""
        if not self.speed or self.bytes_total is None or self.bytes_done is None:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.speed)


def snapshot(client: SwdepotClient, uuid: str, *, with_progress: bool) -> Snapshot:
    """The job now, plus the download status's bytes if it is this job's."""
    job = client.job(uuid)
    if not with_progress:
        return Snapshot(job)
    status = client.download_status()
    if (status.get("job") or {}).get("uuid") != uuid:
        return Snapshot(job)
    return Snapshot(job, status.get("bytes_done"), status.get("bytes_total"), status.get("speed"))


def follow(client: SwdepotClient, uuid: str, *, with_progress: bool = False,
           interval: float = POLL_INTERVAL, timeout: float | None = None,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Snapshot]:
    """Yield snapshots until the job ends (the last one yielded is terminal).

    ``timeout`` bounds the wait (None: as long as the job runs; the service itself ends
    downloads after its time limit).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        shot = snapshot(client, uuid, with_progress=with_progress)
        yield shot
        if shot.finished:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {uuid} still {shot.job.get('state')} after {timeout:g} s")
        sleep(interval)
