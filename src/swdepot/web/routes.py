"""Routes of the web page (``/``), its assets and the API docs page (Swagger UI).

The page lives at ``/`` so that the browser's Basic login covers the whole origin,
the page's own API calls included. Swagger UI comes from the ``swagger-ui-bundle``
package, so ``pip install`` brings it and nothing is fetched at run time.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

STATIC = Path(__file__).parent / "static"
OPENAPI_URL = "/api/openapi.yaml"  # written and served by the API layer
# Swagger UI sets inline styles and uses data: images; nothing is loaded from elsewhere.
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
    "referrer-policy": "same-origin",
}


class WithHeaders:
    """Adds the page headers to every response of a wrapped app (static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in PAGE_HEADERS.items())]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def index(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def api_docs(_request: Request) -> Response:
    return FileResponse(STATIC / "api-docs.html", headers=PAGE_HEADERS)


async def to_index(_request: Request) -> Response:
    return RedirectResponse("/", status_code=308)


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/ui", to_index, methods=["GET"]),
    Route("/ui/api-docs", api_docs, methods=["GET"]),
    Mount("/ui/static", WithHeaders(StaticFiles(directory=STATIC)), name="static"),
    Mount("/ui/swagger", WithHeaders(StaticFiles(directory=Path(str(swagger_ui_path)))),
          name="swagger"),
]
