"""The cluster's identity and software profile (``/api/cluster``, ``/api/cluster/software``).

Every Ansible module reads ``GET /api/cluster?fields=version`` first, and
``na_ontap_software_update`` reads the nodes' versions; both come from the
configured :class:`~swdepot.config.ClusterIdentity`.
"""

from __future__ import annotations

import re
from typing import Any

from swdepot.config import ClusterIdentity

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def version_parts(version: str) -> dict[str, Any]:
    """``9.16.1P3`` → generation 9, major 16, minor 1 (ONTAP's naming of the parts)."""
    match = _VERSION.match(version)
    if not match:
        raise ValueError(f"not an ONTAP version: {version!r}")
    generation, major, minor = match.groups()
    return {"generation": int(generation), "major": int(major), "minor": int(minor or 0)}


class ClusterProfile:
    """Read-only view of the cluster for the API; the update engine comes later."""

    def __init__(self, identity: ClusterIdentity) -> None:
        self.identity = identity
        version_parts(identity.version)  # refuse a malformed configured version at start-up

    @property
    def version(self) -> str:
        return self.identity.version

    def update_in_progress(self) -> bool:
        return False

    def cluster(self) -> dict[str, Any]:
        ident = self.identity
        return {
            "name": ident.name,
            "uuid": ident.uuid,
            "version": {"full": f"NetApp Release {ident.version}: swdepot",
                        **version_parts(ident.version)},
            "_links": {"self": {"href": "/api/cluster"}},
        }

    def software(self) -> dict[str, Any]:
        ident = self.identity
        return {
            "version": ident.version,
            "state": "completed",
            "nodes": [{"name": n, "version": ident.version} for n in ident.nodes],
            "_links": {"self": {"href": "/api/cluster/software"}},
        }
