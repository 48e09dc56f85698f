"""The endpoints: each handler parses the request, calls the domain and answers.

Reads run inline on the event loop (a SQLite WAL read takes microseconds); anything
that writes or may block runs in Starlette's thread pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    respond,
)
from swdepot.api.query import ResourceSchema, page, parse_bool, parse_int, parse_query, select
from swdepot.errors import UNEXPECTED_ARGUMENT, InvalidInput, OntapError, entry_not_found
from swdepot.jobs.model import Job, JobState
from swdepot.service import Service

MAX_RETURN_TIMEOUT = 120


def _service(request: Request) -> Service:
    return request.app.state.service


def _instance(request: Request, body: dict[str, Any], schema: ResourceSchema) -> Response:
    query = parse_query(query_pairs(request), schema, collection=False)
    return respond(request, select(body, query, schema, collection=False))


def _collection(request: Request, records: list[dict[str, Any]], schema: ResourceSchema,
                href: str) -> Response:
    pairs = query_pairs(request)
    query = parse_query(pairs, schema, collection=True)
    return respond(request, page(records, query, schema, self_href=href, raw_query=pairs))


def _action_timeout(pairs: Sequence[tuple[str, str]]) -> int:
    """Query of POST/PATCH/DELETE: ``return_timeout`` (default 0) and ``return_records``."""
    timeout = 0
    for name, value in pairs:
        if name == "return_timeout":
            timeout = parse_int(name, value, 0, MAX_RETURN_TIMEOUT)
        elif name == "return_records":
            parse_bool(name, value)
        else:
            raise InvalidInput(UNEXPECTED_ARGUMENT, f'Unexpected argument "{name}".', target=name)
    return timeout


def job_link(job: Job) -> dict[str, Any]:
    href = f"/api/cluster/jobs/{job.uuid}"
    return {"job": {"uuid": job.uuid, "_links": {"self": {"href": href}}}}


async def _answer_job(request: Request, job: Job, timeout: int, *, done_status: int,
                      location: str | None = None) -> Response:
    """ONTAP's return_timeout: wait for the job, then 201/200, the job's error, or 202."""
    headers = {"location": location} if location else {}
    status = 202
    if timeout > 0:
        finished = await _service(request).runner.wait(job.uuid, timeout)
        if finished is not None and finished.state is JobState.FAILURE:
            raise OntapError(finished.code, finished.message)
        if finished is not None and finished.state is JobState.SUCCESS:
            status = done_status
    return respond(request, job_link(job), status, headers)


# --- /api/cluster ------------------------------------------------------------------------

async def get_cluster(request: Request) -> Response:
    return _instance(request, _service(request).profile.cluster(), schemas.CLUSTER)


async def get_software(request: Request) -> Response:
    return _instance(request, _service(request).profile.software(), schemas.SOFTWARE)


# --- /api/cluster/software/download ------------------------------------------------------

DOWNLOAD_WRITABLE = ("url", "username", "password")
DOWNLOAD_READ_ONLY = ("state", "message", "code")


async def get_download(request: Request) -> Response:
    await refuse_body(request)
    return _instance(request, _service(request).downloads.status().to_ontap(),
                     schemas.DOWNLOAD)


async def post_download(request: Request) -> Response:
    principal(request).require_write()
    timeout = _action_timeout(query_pairs(request))
    body = await read_json_object(request)
    check_fields(body, writable=DOWNLOAD_WRITABLE, read_only=DOWNLOAD_READ_ONLY)
    url = required_string(body, "url")
    username = optional_string(body, "username")
    password = optional_string(body, "password")
    service = _service(request)
    job = await run_in_threadpool(service.downloads.start, url, username, password)
    return await _answer_job(request, job, timeout, done_status=201,
                             location="/api/cluster/software/download")


# --- /api/cluster/software/packages ------------------------------------------------------

async def list_packages(request: Request) -> Response:
    records = [r.to_ontap() for r in _service(request).packages.list()]
    return _collection(request, records, schemas.PACKAGE, "/api/cluster/software/packages")


async def get_package(request: Request) -> Response:
    await refuse_body(request)
    record = _service(request).packages.get(request.path_params["version"])
    return _instance(request, record.to_ontap(), schemas.PACKAGE)


async def delete_package(request: Request) -> Response:
    principal(request).require_write()
    timeout = _action_timeout(query_pairs(request))
    await refuse_body(request)
    service = _service(request)
    job = await run_in_threadpool(service.packages.delete, request.path_params["version"])
    return await _answer_job(request, job, timeout, done_status=200)


# --- /api/cluster/jobs -------------------------------------------------------------------

async def list_jobs(request: Request) -> Response:
    service = _service(request)
    jobs = service.jobs.list(visible_after=service.job_visible_after())
    return _collection(request, [j.to_ontap() for j in jobs], schemas.JOB, "/api/cluster/jobs")


async def get_job(request: Request) -> Response:
    service = _service(request)
    job = service.jobs.get(request.path_params["uuid"])
    if job is None or (job.end_time is not None and job.end_time < service.job_visible_after()):
        raise entry_not_found("uuid")
    return _instance(request, job.to_ontap(), schemas.JOB)


ROUTES = [
    Route("/api/cluster", get_cluster, methods=["GET"]),
    Route("/api/cluster/software", get_software, methods=["GET"]),
    Route("/api/cluster/software/download", get_download, methods=["GET"]),
    Route("/api/cluster/software/download", post_download, methods=["POST"]),
    Route("/api/cluster/software/packages", list_packages, methods=["GET"]),
    Route("/api/cluster/software/packages/{version}", get_package, methods=["GET"]),
    Route("/api/cluster/software/packages/{version}", delete_package, methods=["DELETE"]),
    Route("/api/cluster/jobs", list_jobs, methods=["GET"]),
    Route("/api/cluster/jobs/{uuid}", get_job, methods=["GET"]),
]
