"""The ASGI application: routes, authentication and ONTAP's error envelope everywhere."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp

from swdepot.api.http import AuthMiddleware, CollapseSlashes, RequestRefused, error_response
from swdepot.api.observe import ObserveMiddleware
from swdepot.api.routes import ROUTES
from swdepot.api.runtime import LoopLagMonitor
from swdepot.api.shortcut import PollShortcut
from swdepot.errors import (
    API_NOT_FOUND,
    INTERNAL_ERROR,
    InternalError,
    MethodNotAllowed,
    OntapError,
    api_not_found,
)
from swdepot.logs import REQUEST_ID
from swdepot.service import Service

log = logging.getLogger(__name__)



async def _ontap_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OntapError)
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in ONTAP's words; a 405 keeps its ``Allow`` (RFC 9110)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        response = error_response(request, MethodNotAllowed(API_NOT_FOUND,
                                                            "The operation is not supported."))
        response.headers["allow"] = ", ".join(_allowed_methods(request))
        return response
    if exc.status_code == 404:
        return error_response(request, api_not_found())
    return error_response(request, RequestRefused(2, exc.detail, status=exc.status_code))


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path: one resource spans several routes
    (a GET route and a POST route), and Starlette's own ``Allow`` names only the first."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Never a traceback to the client: log it, answer ONTAP's generic 500.

    Starlette answers from outside every middleware here, ObserveMiddleware's included,
    so the request id it gave the request is added again: the id the log line carries.
    """
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    response = error_response(request, InternalError(
        INTERNAL_ERROR, "Application code returned an unexpected exception."))
    request_id = REQUEST_ID.get()
    if request_id is not None:
        response.headers["x-request-id"] = request_id
    return response


class _App(Starlette):
    """Starlette with :class:`PollShortcut` outside its whole stack, Starlette's own
    error middleware included: the shortcut answers only what cannot fail on the way
    (it passes everything else on) and is the first thing every request meets."""

    def __init__(self, service: Service, poll_shortcut: bool, **options: Any) -> None:
        self._shortcut_for = service if poll_shortcut else None
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self._shortcut_for is None:
            return stack
        return PollShortcut(stack, self._shortcut_for)


def create_app(service: Service, *, poll_shortcut: bool = True) -> Starlette:
    """A Starlette app serving ``service``; the caller owns the service's lifetime.

    ``poll_shortcut=False`` leaves out :class:`PollShortcut`, so that every request takes
    the routes' path (the tests compare the two).
    """
    monitor = LoopLagMonitor(service.settings.loop_lag_interval)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        monitor.start()
        yield
        await monitor.stop()

    app = _App(
        service, poll_shortcut,
        lifespan=lifespan,
        routes=ROUTES,
        middleware=[Middleware(CollapseSlashes),
                    Middleware(ObserveMiddleware, metrics=service.metrics),
                    Middleware(AuthMiddleware, authenticator=service.authenticator)],
        exception_handlers={
            OntapError: _ontap_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.service = service
    app.state.loop_monitor = monitor
    return app
