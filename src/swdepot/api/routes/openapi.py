"""``/api/openapi.yaml`` (and ``.json``): swdepot's own OpenAPI document.

The document is written by hand next to the routes (``api/openapi.yaml``, package data)
rather than generated, because ONTAP's conventions — generic query parameters, the
error envelope, job links — are not visible in the route functions. A test keeps the
two in step.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api.http import SECURITY_HEADERS

YAML = "application/yaml"


@cache
def document_text() -> bytes:
    """The document as shipped; read once, it never changes while the service runs."""
    return files("swdepot.api").joinpath("openapi.yaml").read_bytes()


@cache
def document_json() -> bytes:
    import yaml  # loading libyaml costs ~0.15 s of start-up; only this route needs it

    return orjson.dumps(yaml.safe_load(document_text()))


async def get_yaml(_request: Request) -> Response:
    return Response(await run_in_threadpool(document_text), media_type=YAML,
                    headers=SECURITY_HEADERS)


async def get_json(_request: Request) -> Response:
    return Response(await run_in_threadpool(document_json), media_type="application/json",
                    headers=SECURITY_HEADERS)


ROUTES = [
    Route("/api/openapi.yaml", get_yaml, methods=["GET"]),
    Route("/api/openapi.json", get_json, methods=["GET"]),
]
