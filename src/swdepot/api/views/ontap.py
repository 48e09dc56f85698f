"""What every ONTAP resource's JSON shares: date-times and HAL self links."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any


@functools.lru_cache(maxsize=1024)
def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as ONTAP's ISO-8601 date-time (with offset).

    Remembered: a polled job renders the same two instants thousands of times, and
    formatting one costs more than the rest of the job's record together.
    """
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def self_link(href: str) -> dict[str, Any]:
    """``_links`` naming the resource itself (HAL), as ONTAP puts on every record."""
    return {"self": {"href": href}}
