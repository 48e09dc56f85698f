"""Request ids, the access log and HTTP metrics, as one ASGI middleware.

It sits outside authentication so that refused requests are counted and logged
too. Routes are recorded by their template (``/api/cluster/jobs/{uuid}``), never
the raw path, so metric labels stay few however many jobs there are.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swdepot.logs import REQUEST_ID, request_id_from
from swdepot.metrics import Metrics

access_log = logging.getLogger("swdepot.access")

REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED = "<unmatched>"


class ObserveMiddleware:
    """Tags each request with an id (also returned as ``X-Request-Id``), logs and counts it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == REQUEST_ID_HEADER),
                      b"").decode("latin-1")
        request_id = request_id_from(header)
        REQUEST_ID.set(request_id)  # the request's own task: no reset needed
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            record(self.metrics, scope, route, status, time.perf_counter() - started)


def record(metrics: Metrics, scope: Scope, route: str, status: int, elapsed: float) -> None:
    """Count and log one answered request (also used by the poll shortcut)."""
    metrics.http_request(scope["method"], route, status, elapsed)
    if access_log.isEnabledFor(logging.INFO):
        _log_access(scope, route, status, elapsed)


def _log_access(scope: Scope, route: str, status: int, elapsed: float) -> None:
    principal = scope.get("principal")
    access_log.info("%s %s %d", scope["method"], route, status, extra={
        "method": scope["method"], "path": scope["path"], "route": route,
        "status": status, "duration_ms": round(elapsed * 1000, 2),
        "user": getattr(principal, "name", None),
    })
