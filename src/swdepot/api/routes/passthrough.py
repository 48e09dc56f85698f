"""``/api/private/cli/...``: ONTAP's CLI passthrough (:mod:`swdepot.api.passthrough`).

An unknown command path is ONTAP's 404 "API not found" and a known one with another
method a 405, from the app's handlers like any other route. OPTIONS on a command path
answers the methods it serves in ``Allow``, as ONTAP does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api.http import SECURITY_HEADERS
from swdepot.api.passthrough import ha, image

Endpoint = Callable[[Request], Awaitable[Response]]
COMMANDS = [*image.ROUTES, *ha.ROUTES]


def _answering_options(endpoint: Endpoint, allow: str) -> Endpoint:
    async def answer(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=200, headers={**SECURITY_HEADERS, "allow": allow})
        return await endpoint(request)
    answer.__doc__ = endpoint.__doc__
    return answer


def _routes() -> list[Route]:
    """The commands, the first route of each path also answering OPTIONS."""
    allow: dict[str, set[str]] = {}
    for route in COMMANDS:
        allow.setdefault(route.path, {"OPTIONS"}).update(route.methods or ())
    routes = []
    for route in COMMANDS:
        methods = allow.pop(route.path, None)
        if methods is None:
            routes.append(route)
            continue
        routes.append(Route(route.path, _answering_options(route.endpoint,
                                                           ", ".join(sorted(methods))),
                            methods=[*(route.methods or ()), "OPTIONS"]))
    return routes


ROUTES = _routes()
