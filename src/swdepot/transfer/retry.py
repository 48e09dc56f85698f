"""Retrying a transfer: bounded exponential back-off with jitter, honouring Retry-After.

curl and aria2 survive flaky servers the same way: a transient failure (connection
reset, truncated body, 5xx, connect timeout) is followed by a pause that doubles
each time, randomised so that many clients do not come back in step, and the next
attempt continues where the last one stopped. The failure counter starts again
whenever an attempt got further than any before it, so a server that drops the
connection every few megabytes still delivers the whole file; the overall time limit
(ONTAP's one hour, 10551383) bounds everything, waits included.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from swdepot.transfer.control import (
    Cancelled,
    Control,
    RestartNeeded,
    Transient,
    time_limit_exceeded,
)
from swdepot.transfer.sink import BlockGatherer

log = logging.getLogger(__name__)

WAIT_SLICE = 0.1  # how often a back-off wait looks for cancellation
DEADLINE_SLACK = 0.5  # a failure this close to the time limit is the time limit


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Back-off before attempt ``failures + 1``: "equal jitter" in [d/2, d].

        A server's ``Retry-After`` is a floor: swdepot never comes back sooner than asked.
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        backoff = rng.uniform(ceiling / 2, ceiling)
        return backoff if retry_after is None else max(backoff, retry_after)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


Attempt = Callable[[float], None]  # one try, given the seconds left before the time limit


class Retrier:
    """Runs attempts until one succeeds, a failure is permanent, or the budget is spent."""

    def __init__(self, policy: RetryPolicy, max_duration: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self._policy = policy
        self._max_duration = max_duration
        self._clock = clock
        self._rng = rng or random.Random()

    def run(self, attempt: Attempt, sink: BlockGatherer, control: Control, what: str) -> None:
        """Call ``attempt`` until it returns; raise the error that ended the transfer."""
        deadline = self._clock() + self._max_duration
        failures = 0
        furthest = sink.bytes_written
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise time_limit_exceeded(self._max_duration)
            try:
                attempt(remaining)
                return
            except Transient as exc:
                error = exc
            if deadline - self._clock() <= DEADLINE_SLACK:
                raise time_limit_exceeded(self._max_duration) from None
            if isinstance(error, RestartNeeded):
                sink.rewind()
            if sink.bytes_written > furthest:
                furthest, failures = sink.bytes_written, 0
            failures += 1
            if failures > self._policy.retries:
                raise error.give_up(failures) from None
            pause = self._policy.delay(failures, error.retry_after, self._rng)
            if self._clock() + pause >= deadline:
                raise error.give_up(failures) from None
            log.warning("transfer of %s interrupted (%s); attempt %d in %.1f s from byte %d",
                        what, error.detail, failures + 1, pause, sink.bytes_written)
            control.retrying(f"retrying: {error.detail} (attempt {failures + 1} of "
                             f"{self._policy.retries + 1})")
            self._wait(pause, control)
            control.retrying(None)

    def _wait(self, seconds: float, control: Control) -> None:
        """Sleep, but end at once when the job is cancelled."""
        end = self._clock() + seconds
        while (left := end - self._clock()) > 0:
            if control.cancelled:
                raise Cancelled()
            time.sleep(min(WAIT_SLICE, left))
