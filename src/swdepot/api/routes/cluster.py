"""``/api/cluster`` and ``/api/cluster/software``: identity and software profile."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api import schemas
from swdepot.api.routes.common import instance, service_of


async def get_cluster(request: Request) -> Response:
    return instance(request, service_of(request).profile.cluster(), schemas.CLUSTER)


async def get_software(request: Request) -> Response:
    return instance(request, service_of(request).profile.software(), schemas.SOFTWARE)


ROUTES = [
    Route("/api/cluster", get_cluster, methods=["GET"]),
    Route("/api/cluster/software", get_software, methods=["GET"]),
]
