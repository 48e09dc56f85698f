"""Failed-login rate limiting per client address.

Every password check costs a slow hash (a quarter of a second, on purpose), so guessing is
already slow; the limiter makes it hopeless and keeps a flood of wrong passwords from
eating the CPU. After ``max_failures`` failed logins from one address within
``window`` seconds, further password checks from that address are refused with
HTTP 429 and ``Retry-After`` until the oldest failure leaves the window. Credentials
verified earlier still work from the cache (their owner knows the password), so a
locked-out address does not lock out a client that is already polling a job.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from swdepot.errors import TOO_MANY_REQUESTS, Throttled

MAX_TRACKED = 10_000  # addresses remembered at once; the oldest are forgotten first


class TooManyFailures(Throttled):
    """ONTAP's "too many requests" code, and when to come back."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(TOO_MANY_REQUESTS, "Too many failed login attempts from this address. "
                         f"Retry after {retry_after} seconds.", retry_after=retry_after)


class LoginLimiter:
    """Counts failed logins per address in a sliding window."""

    def __init__(self, max_failures: int = 10, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_failures
        self._window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str | None) -> None:
        """Raise :class:`TooManyFailures` if ``client`` must wait before trying again."""
        if client is None or self._max <= 0:
            return
        with self._lock:
            recent = self._recent(client)
            if recent is not None and len(recent) >= self._max:
                wait = recent[0] + self._window - self._clock()
                raise TooManyFailures(max(1, math.ceil(wait)))

    def failed(self, client: str | None) -> None:
        if client is None:
            return
        with self._lock:
            recent = self._recent(client)
            if recent is None:
                recent = self._failures[client] = deque()
                while len(self._failures) > MAX_TRACKED:
                    self._failures.popitem(last=False)
            recent.append(self._clock())

    def succeeded(self, client: str | None) -> None:
        if client is not None:
            with self._lock:
                self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float] | None:
        """The client's failures still inside the window (caller holds the lock)."""
        recent = self._failures.get(client)
        if recent is None:
            return None
        cutoff = self._clock() - self._window
        while recent and recent[0] <= cutoff:
            recent.popleft()
        if not recent:
            del self._failures[client]
            return None
        return recent
