"""``/api/cluster/software/packages``: the repository's software images."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api import schemas
from swdepot.api.http import principal, query_pairs, refuse_body
from swdepot.api.routes.common import (
    action_timeout,
    answer_job,
    collection,
    instance,
    service_of,
)
from swdepot.api.views.packages import PACKAGES as HREF
from swdepot.api.views.packages import package_record


async def list_packages(request: Request) -> Response:
    records = [package_record(r) for r in service_of(request).packages.list()]
    return collection(request, records, schemas.PACKAGE, HREF)


async def get_package(request: Request) -> Response:
    await refuse_body(request)
    record = service_of(request).packages.get(request.path_params["version"])
    return instance(request, package_record(record), schemas.PACKAGE)


async def delete_package(request: Request) -> Response:
    principal(request).require_write()
    timeout = action_timeout(query_pairs(request))
    await refuse_body(request)
    packages = service_of(request).packages
    job = await run_in_threadpool(packages.delete, request.path_params["version"])
    return await answer_job(request, job, timeout, done_status=200)


ROUTES = [
    Route(HREF, list_packages, methods=["GET"]),
    Route(HREF + "/{version}", get_package, methods=["GET"]),
    Route(HREF + "/{version}", delete_package, methods=["DELETE"]),
]
