"""``/api/cluster/jobs``: recently running asynchronous jobs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api import schemas
from swdepot.api.routes.common import collection, instance, service_of
from swdepot.errors import entry_not_found


async def list_jobs(request: Request) -> Response:
    service = service_of(request)
    jobs = service.jobs.list(visible_after=service.job_visible_after())
    return collection(request, [j.to_ontap() for j in jobs], schemas.JOB, "/api/cluster/jobs")


async def get_job(request: Request) -> Response:
    service = service_of(request)
    job = service.jobs.get(request.path_params["uuid"])
    if job is None or (job.end_time is not None and job.end_time < service.job_visible_after()):
        raise entry_not_found("uuid")
    return instance(request, job.to_ontap(), schemas.JOB)


ROUTES = [
    Route("/api/cluster/jobs", list_jobs, methods=["GET"]),
    Route("/api/cluster/jobs/{uuid}", get_job, methods=["GET"]),
]
