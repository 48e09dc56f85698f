"""The cluster's nodes: which there are, and whether each is up.

Embedded (one process, SQLite): the nodes are the configured ``cluster.nodes`` (ONTAP's
two-node cluster that one swdepot serves), all up while it runs; each has a uuid derived
from the cluster's uuid and its name, so it never changes.

Cluster mode (a shared database): the nodes are the swdepot processes that joined. A
node *joins* when it starts (a row in the node store, keyed by its name: a restarted
node keeps its uuid) and renews a heartbeat every ``lease_seconds / 3``; it is ``up``
while its last heartbeat is younger than ``lease_seconds`` (the same lease its jobs
have: a node that is down has lost them too), else ``down``. A node that leaves
(stops) stays listed, ``down``, as ONTAP keeps a halted node in the cluster.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

MODEL = "swdepot"  # [decision] a node's model: no hardware to name, the product that serves it


@dataclass(frozen=True)
class NodeRecord:
    """A node as the node store keeps it."""

    name: str
    uuid: str
    started_at: float
    heartbeat_at: float
    address: str  # where it runs: host and pid, for an operator


class NodeStore(Protocol):
    """Joined nodes, shared by every node of a cluster."""

    def join(self, name: str, new_uuid: str, now: float, address: str, *,
             silent_before: float) -> NodeRecord | None:
        """Record the node as started now (a node that joined before keeps its uuid),
        unless a node of that name beat at or after ``silent_before``: then None, and
        nothing is changed (one statement: of two starting at once, one joins)."""

    def heartbeat(self, name: str, now: float) -> None: ...

    def leave(self, name: str) -> None:
        """The node stopped: its heartbeat ends (it stays listed, down)."""

    def all(self) -> list[NodeRecord]:
        """Every node that ever joined, in the order they first did."""


@dataclass(frozen=True)
class Node:
    """A node as the cluster reports it."""

    name: str
    uuid: str
    up: bool
    uptime: int  # seconds since it started, 0 while down


class NodeNameTaken(Exception):
    """A node of this name is up elsewhere in the cluster: names are unique."""

    def __init__(self, name: str, address: str, age: float, lease: float) -> None:
        super().__init__(
            f"node {name} is already up in this cluster ({address}, last heartbeat "
            f"{max(0.0, age):.0f} s ago): give this process another --node-name, or stop "
            f"that one (its name is free {lease:.0f} s after its last heartbeat)")
        self.name = name


def _dead_here(address: str, host: str) -> bool:
    """``address`` (``"HOST pid N"``) names a process of this host that is gone."""
    where, _, pid = address.rpartition(" pid ")
    if where != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()


class NodeDirectory:
    """The nodes of this cluster; ``store`` None: the embedded, configured ones."""

    def __init__(self, cluster_uuid: str, configured: tuple[str, ...], name: str, *,
                 store: NodeStore | None = None, lease_seconds: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._cluster_uuid = cluster_uuid
        self._configured = configured
        self.name = name
        self._store = store
        self._lease = lease_seconds
        self._clock = clock
        self._started = clock()

    @property
    def clustered(self) -> bool:
        return self._store is not None

    @property
    def heartbeat_interval(self) -> float:
        return self._lease / 3

    def join(self) -> None:
        """This node has started (cluster mode: recorded for every node to see).

        A node name is unique in the cluster: while a node of this name is up (its
        heartbeat younger than a lease) elsewhere, :class:`NodeNameTaken` is raised and
        nothing is changed. A predecessor on this host whose process is gone (killed,
        restarted at once) is no obstacle."""
        self._started = now = self._clock()
        if self._store is None:
            return
        host = socket.gethostname()
        silent_before = now - self._lease
        known = next((r for r in self._store.all() if r.name == self.name), None)
        if known is not None and _dead_here(known.address, host):
            silent_before = math.inf
        if self._store.join(self.name, str(uuidlib.uuid4()), now, f"{host} pid {os.getpid()}",
                            silent_before=silent_before) is None:
            holder = next((r for r in self._store.all() if r.name == self.name), None)
            raise NodeNameTaken(self.name, holder.address if holder else "another process",
                                now - holder.heartbeat_at if holder else 0.0, self._lease)

    def beat(self) -> None:
        if self._store is not None:
            self._store.heartbeat(self.name, self._clock())

    def leave(self) -> None:
        if self._store is not None:
            self._store.leave(self.name)

    def names(self) -> tuple[str, ...]:
        """The nodes' names, in the cluster's order."""
        if self._store is None:
            return self._configured
        return tuple(r.name for r in self._store.all()) or (self.name,)

    def nodes(self) -> list[Node]:
        now = self._clock()
        if self._store is None:
            uptime = int(now - self._started)
            return [Node(n, self.configured_uuid(n), True, uptime) for n in self._configured]
        return [Node(r.name, r.uuid, up, int(now - r.started_at) if up else 0)
                for r in self._store.all()
                for up in [now - r.heartbeat_at < self._lease]]

    def configured_uuid(self, name: str) -> str:
        return str(uuidlib.uuid5(uuidlib.UUID(self._cluster_uuid), name))
