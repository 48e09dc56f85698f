"""Failed-login rate limiting per client address.

Every password check costs a slow hash (a quarter of a second, on purpose), so guessing is
already slow; the limiter makes it hopeless and keeps a flood of wrong passwords from
eating the CPU. After ``max_failures`` failed logins from one address within
``window`` seconds, further password checks from that address are refused with
HTTP 429 and ``Retry-After`` until the oldest failure leaves the window. Credentials
verified earlier still work from the cache (their owner knows the password), so a
locked-out address does not lock out a client that is already polling a job.

Cluster-wide: with a :class:`FailureLog` (a table of the shared database), every failed
login is recorded there too, and the slow path (:meth:`LoginLimiter.check_shared`, run
before each password check, off the event loop) counts the address's failures on every
node; the fast :meth:`LoginLimiter.check` keeps to this process's memory, which learns
a lockout found in the log. So guesses spread over the nodes behind a load balancer are
limited as if they all went to one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

from swdepot.errors import TOO_MANY_REQUESTS, Throttled

MAX_TRACKED = 10_000  # addresses remembered at once; the oldest are forgotten first


class TooManyFailures(Throttled):
    """ONTAP's "too many requests" code, and when to come back."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(TOO_MANY_REQUESTS, "Too many failed login attempts from this address. "
                         f"Retry after {retry_after} seconds.", retry_after=retry_after)


class FailureLog(Protocol):
    """Failed logins as every process of a cluster sees them (wall-clock times)."""

    def add(self, address: str, at: float, forget_before: float) -> None:
        """Record a failure; failures older than ``forget_before`` (any address) may go."""

    def since(self, address: str, cutoff: float) -> list[float]:
        """The address's failures after ``cutoff``, oldest first."""

    def clear(self, address: str) -> None:
        """The address logged in: its failures are forgotten."""


class LoginLimiter:
    """Counts failed logins per address in a sliding window."""

    def __init__(self, max_failures: int = 10, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, *,
                 shared: FailureLog | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._max = max_failures
        self._window = window
        self._clock = clock
        self._shared = shared
        self._wall = wall_clock
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

    def check_shared(self, client: str | None) -> None:
        """:meth:`check`, counting the failures every node recorded (blocking: a query)."""
        self.check(client)
        if client is None or self._max <= 0 or self._shared is None:
            return
        now = self._wall()
        times = self._shared.since(client, now - self._window)
        if len(times) >= self._max:
            wait = times[-self._max] + self._window - now
            with self._lock:  # remembered here, so the fast check refuses it too
                mono = self._clock()
                self._failures[client] = deque(mono - (now - t) for t in times)
                self._failures.move_to_end(client)
                while len(self._failures) > MAX_TRACKED:
                    self._failures.popitem(last=False)
            raise TooManyFailures(max(1, math.ceil(wait)))

    def failed(self, client: str | None) -> None:
        if client is None:
            return
        if self._shared is not None and self._max > 0:
            now = self._wall()
            self._shared.add(client, now, forget_before=now - self._window)
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
            if self._shared is not None and self._max > 0:
                self._shared.clear(client)

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
