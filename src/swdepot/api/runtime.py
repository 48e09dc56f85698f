"""How the service itself is doing: event-loop lag and memory, for benchmarks and operators.

The API must stay instant while gigabytes stream through the same process, so a blocking
call on the event loop is a bug. :class:`LoopLagMonitor` makes such stalls visible: it
sleeps a fixed interval and records how late it wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections import deque
from pathlib import Path
from typing import Any

WINDOW = 6000  # samples kept: ten minutes at the default interval (config.py)


class LoopLagMonitor:
    """Samples the event loop's wake-up lateness while the server runs."""

    def __init__(self, interval: float, window: int = WINDOW) -> None:
        if not interval > 0:
            raise ValueError("the loop-lag interval must be a positive number of seconds")
        self._interval = interval
        self._samples: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self._interval)
            self._samples.append(max(0.0, loop.time() - before - self._interval))

    def reset(self) -> None:
        self._samples.clear()

    def snapshot(self) -> dict[str, Any]:
        """Lag percentiles in milliseconds over the recent window."""
        ordered = sorted(self._samples)
        if not ordered:
            return {"samples": 0, "p50": None, "p99": None, "max": None}

        def pct(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {"samples": len(ordered), "p50": pct(0.5), "p99": pct(0.99),
                "max": round(ordered[-1] * 1000, 3)}


def memory() -> dict[str, int]:
    """Current and peak resident set size of this process, in KiB."""
    status = Path("/proc/self/status")
    values = {"rss_kb": -1, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                values["rss_kb"] = int(line.split()[1])
    return values
