"""Named leases: work that many processes could do, done by one of them at a time.

Every process advances a running software update (``UpdateEngine.tick``), and each
step's work re-reads and hashes package copies. A lease named for the work lets one
process hold it: the holder renews it on every round, and another process gets it only
once it has run out — or at once when the holder is a dead earlier process of the
asking node (the node lock proves that, ``nodelock.py``). Holders are named as job
owners are (``node/pid/random``).
"""

from __future__ import annotations

from typing import Protocol


class Leases(Protocol):
    def acquire(self, name: str, holder: str, node: str, now: float, until: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``until``; False while
        another live holder has it (its lease not run out, and not a dead process of
        ``node``)."""
