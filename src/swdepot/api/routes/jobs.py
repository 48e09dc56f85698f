"""``/api/cluster/jobs``: recently running asynchronous jobs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api import schemas
from swdepot.api.http import principal, query_pairs, refuse_body, respond
from swdepot.api.routes.common import collection, instance, service_of
from swdepot.api.views.jobs import JOBS, job_record
from swdepot.errors import (
    MISSING_REQUIRED,
    UNEXPECTED_ARGUMENT,
    InvalidInput,
    entry_not_found,
    invalid_field_value,
)
from swdepot.jobs.model import Job
from swdepot.service import Service


async def list_jobs(request: Request) -> Response:
    service = service_of(request)
    jobs = service.jobs.list(visible_after=service.job_visible_after())
    return collection(request, [job_record(j) for j in jobs], schemas.JOB, JOBS)


def visible_job(service: Service, uuid: str) -> Job | None:
    """The job, unless it is unknown or ended longer ago than the retention period."""
    job = service.jobs.get(uuid)
    if job is None or (job.end_time is not None and job.end_time < service.job_visible_after()):
        return None
    return job


def _visible_job(request: Request) -> Job | None:
    return visible_job(service_of(request), request.path_params["uuid"])


async def get_job(request: Request) -> Response:
    job = _visible_job(request)
    if job is None:
        raise entry_not_found("uuid")
    return instance(request, job_record(job), schemas.JOB)


async def patch_job(request: Request) -> Response:
    """``?action=cancel|pause|resume``; 200 with an empty object, as ONTAP."""
    principal(request).require_write()
    action = None
    for name, value in query_pairs(request):
        if name == "action":
            action = value
        elif name not in ("return_timeout", "return_records"):
            raise InvalidInput(UNEXPECTED_ARGUMENT, f'Unexpected argument "{name}".',
                               target=name)
    if action is None:
        raise InvalidInput(MISSING_REQUIRED, 'Missing value for required field "action".',
                           target="action")
    if action not in ("cancel", "pause", "resume"):
        raise invalid_field_value("action", action, "<pause|resume|cancel>")
    await refuse_body(request)
    service_of(request).job_control.act(_visible_job(request), action)
    return respond(request, {})


ROUTES = [
    Route("/api/cluster/jobs", list_jobs, methods=["GET"]),
    Route("/api/cluster/jobs/{uuid}", get_job, methods=["GET"]),
    Route("/api/cluster/jobs/{uuid}", patch_job, methods=["PATCH"]),
]
