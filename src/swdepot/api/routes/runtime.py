"""``/api/swdepot/runtime``: swdepot's own health figures (not an ONTAP endpoint)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api.http import query_pairs, respond
from swdepot.api.query import parse_bool
from swdepot.api.runtime import memory


async def get_runtime(request: Request) -> Response:
    """Loop lag and memory; ``?reset=true`` starts a new measurement window."""
    monitor = request.app.state.loop_monitor
    body = {"loop_lag_ms": monitor.snapshot(), **memory(),
            "_links": {"self": {"href": "/api/swdepot/runtime"}}}
    for name, value in query_pairs(request):
        if name == "reset" and parse_bool(name, value):
            monitor.reset()
    return respond(request, body)


ROUTES = [Route("/api/swdepot/runtime", get_runtime, methods=["GET"])]
