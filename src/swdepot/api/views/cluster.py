"""``/api/cluster`` and the ``version`` object ``/api/cluster/nodes`` shares with it."""

from __future__ import annotations

from typing import Any

from swdepot.api.views.ontap import self_link
from swdepot.software.profile import ClusterView, version_parts

CLUSTER = "/api/cluster"


def version_record(version: str) -> dict[str, Any]:
    """ONTAP's ``version``: the release string and its numbered parts."""
    parts = version_parts(version)
    return {"full": f"NetApp Release {version}: swdepot", "generation": parts.generation,
            "major": parts.major, "minor": parts.minor}


def cluster_record(cluster: ClusterView) -> dict[str, Any]:
    """``/api/cluster``: name, uuid, version and time zone."""
    return {
        "name": cluster.name,
        "uuid": cluster.uuid,
        "version": version_record(cluster.version),
        "timezone": {"name": cluster.timezone},
        "_links": self_link(CLUSTER),
    }
