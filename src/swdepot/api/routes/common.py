"""Helpers every route module uses: parse, shape a resource, answer a job.

Reads run inline on the event loop (a SQLite WAL read takes microseconds); anything
that writes or may block runs in Starlette's thread pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from swdepot.api.http import query_pairs, respond
from swdepot.api.query import (
    MAX_RETURN_TIMEOUT,
    ResourceSchema,
    page,
    parse_bool,
    parse_int,
    parse_query,
    select,
)
from swdepot.api.views.jobs import job_link
from swdepot.errors import UNEXPECTED_ARGUMENT, InvalidInput, OntapError
from swdepot.jobs.model import Job, JobState
from swdepot.service import Service


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def instance(request: Request, body: dict[str, Any], schema: ResourceSchema) -> Response:
    """An instance GET: all normal fields unless ``fields`` narrows them."""
    query = parse_query(query_pairs(request), schema, collection=False)
    return respond(request, select(body, query, schema, collection=False))


def collection(request: Request, records: list[dict[str, Any]], schema: ResourceSchema,
               href: str) -> Response:
    """A collection GET with ONTAP's filters, projection, ordering and paging."""
    pairs = query_pairs(request)
    query = parse_query(pairs, schema, collection=True)
    return respond(request, page(records, query, schema, self_href=href, raw_query=pairs))


def action_timeout(pairs: Sequence[tuple[str, str]], *, allowed: Sequence[str] = ()) -> int:
    """Query of POST/PATCH/DELETE: ``return_timeout`` (default 0) and ``return_records``.

    ``allowed`` names further parameters the endpoint reads itself.
    """
    timeout = 0
    for name, value in pairs:
        if name == "return_timeout":
            timeout = parse_int(name, value, 0, MAX_RETURN_TIMEOUT)
        elif name == "return_records":
            parse_bool(name, value)
        elif name not in allowed:
            raise InvalidInput(UNEXPECTED_ARGUMENT, f'Unexpected argument "{name}".', target=name)
    return timeout


async def answer_job(request: Request, job: Job, timeout: int, *, done_status: int,
                     location: str | None = None) -> Response:
    """ONTAP's return_timeout: wait for the job, then 201/200, the job's error, or 202."""
    headers = {"location": location} if location else {}
    status = 202
    if timeout > 0:
        finished = await service_of(request).runner.wait(job.uuid, timeout)
        if finished is not None and finished.state is JobState.FAILURE:
            raise OntapError(finished.code, finished.message)
        if finished is not None and finished.state is JobState.SUCCESS:
            status = done_status
    return respond(request, job_link(job), status, headers)
