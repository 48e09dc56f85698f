"""``/api/cluster/software/download``: start a package download, read its status."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api import schemas
from swdepot.api.http import (
    check_fields,
    optional_string,
    principal,
    query_pairs,
    read_json_object,
    refuse_body,
    required_string,
)
from swdepot.api.routes.common import action_timeout, answer_job, instance, service_of
from swdepot.api.views.download import download_record

WRITABLE = ("url", "username", "password")
READ_ONLY = ("state", "message", "code")
LOCATION = "/api/cluster/software/download"


async def get_download(request: Request) -> Response:
    await refuse_body(request)
    return instance(request, download_record(service_of(request).downloads.status()),
                    schemas.DOWNLOAD)


async def post_download(request: Request) -> Response:
    principal(request).require_write()
    timeout = action_timeout(query_pairs(request))
    body = await read_json_object(request)
    check_fields(body, writable=WRITABLE, read_only=READ_ONLY)
    url = required_string(body, "url")
    username = optional_string(body, "username")
    password = optional_string(body, "password")
    downloads = service_of(request).downloads
    job = await run_in_threadpool(downloads.start, url, username, password)
    return await answer_job(request, job, timeout, done_status=201, location=LOCATION)


ROUTES = [
    Route("/api/cluster/software/download", get_download, methods=["GET"]),
    Route("/api/cluster/software/download", post_download, methods=["POST"]),
]
