"""``/metrics``: the service's Prometheus metrics (authenticated like every other path)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api.routes.common import service_of
from swdepot.metrics import CONTENT_TYPE


async def get_metrics(request: Request) -> Response:
    """Rendering reads the catalog and job store, so it runs off the event loop."""
    body = await run_in_threadpool(service_of(request).metrics.render)
    return Response(body, media_type=CONTENT_TYPE)


ROUTES = [Route("/metrics", get_metrics, methods=["GET"])]
