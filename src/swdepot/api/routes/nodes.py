"""``/api/cluster/nodes``: the cluster's nodes, as ONTAP's ``system node show`` lists them.

Embedded, the configured nodes; in cluster mode, the swdepot nodes that joined
(``nodes.py``), ``up`` while their heartbeat is fresh. Each node's version is the ONTAP
version the software profile says it runs (an update changes it).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api import schemas
from swdepot.api.routes.common import collection, instance, service_of
from swdepot.api.views.cluster import version_record
from swdepot.api.views.ontap import self_link
from swdepot.errors import entry_not_found
from swdepot.nodes import MODEL, Node
from swdepot.service import Service

COLLECTION = "/api/cluster/nodes"


def _record(node: Node, version: str) -> dict[str, Any]:
    return {
        "uuid": node.uuid,
        "name": node.name,
        "state": "up" if node.up else "down",
        "membership": "member",
        "model": MODEL,
        "uptime": node.uptime,
        "version": version_record(version),
        "_links": self_link(f"{COLLECTION}/{node.uuid}"),
    }


def _records(service: Service) -> list[dict[str, Any]]:
    versions = service.profile.node_versions()
    default = service.settings.cluster.version
    return [_record(n, versions.get(n.name, default)) for n in service.nodes.nodes()]


async def list_nodes(request: Request) -> Response:
    records = await run_in_threadpool(_records, service_of(request))
    return collection(request, records, schemas.NODE, COLLECTION)


async def get_node(request: Request) -> Response:
    records = await run_in_threadpool(_records, service_of(request))
    found = next((r for r in records if r["uuid"] == request.path_params["uuid"]), None)
    if found is None:
        raise entry_not_found("uuid")
    return instance(request, found, schemas.NODE)


ROUTES = [
    Route(COLLECTION, list_nodes, methods=["GET"]),
    Route(f"{COLLECTION}/{{uuid}}", get_node, methods=["GET"]),
]
