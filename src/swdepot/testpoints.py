"""Named points where a crash test can freeze a real ``swdepot serve`` process.

Restart safety has to be proven with real ``kill -9`` at the worst moments (between
committing the two copies of a package, between dropping a record and its blobs…).
Those windows are microseconds wide, so a test names one in ``SWDEPOT_PAUSE_AT``
(comma-separated); the process writes the name into the file ``SWDEPOT_PAUSE_MARKER``
when it gets there and then sleeps, and the test kills it while it sleeps.

Without ``SWDEPOT_PAUSE_AT`` — always, in production — :func:`reached` reads one
environment variable and returns; nothing else in any code path changes. The points
are listed in ``docs/reliability.md``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "SWDEPOT_PAUSE_AT"
PAUSE_MARKER = "SWDEPOT_PAUSE_MARKER"
PAUSE_SECONDS = 120.0  # bounded: a forgotten pause ends by itself


def reached(point: str) -> None:
    """Pause here if a test asked for this point; a no-op otherwise."""
    wanted = os.environ.get(PAUSE_AT)
    if not wanted or point not in wanted.split(","):
        return
    marker = os.environ.get(PAUSE_MARKER)
    if marker:
        Path(marker).write_text(point)
    time.sleep(PAUSE_SECONDS)
