"""``/api/cluster`` and ``/api/cluster/software``: identity, software profile and update."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api import schemas
from swdepot.api.http import check_fields, optional_string, principal, query_pairs, read_json_object
from swdepot.api.query import parse_bool, parse_int
from swdepot.api.routes.common import (
    action_timeout,
    answer_job,
    collection,
    instance,
    service_of,
)
from swdepot.api.views.cluster import cluster_record
from swdepot.api.views.software import history_record, software_record
from swdepot.errors import invalid_field_value
from swdepot.service import Service

ACTIONS = ("pause", "resume", "cancel")
UPDATE_QUERY = ("validate_only", "skip_warnings", "action", "nodes_to_update",
                "stabilize_minutes")
READ_ONLY = ("state", "pending_version", "nodes", "validation_results", "status_details",
             "update_details", "post_update_checks", "elapsed_duration", "estimated_duration",
             "metrocluster", "start_time", "end_time")
DEFAULT_STABILIZE_MINUTES = 8


async def get_cluster(request: Request) -> Response:
    return instance(request, cluster_record(service_of(request).profile.cluster()),
                    schemas.CLUSTER)


async def get_software(request: Request) -> Response:
    return instance(request, software_record(service_of(request).profile.software()),
                    schemas.SOFTWARE)


async def patch_software(request: Request) -> Response:
    """Validate (``validate_only``), update (``version``) or ``action`` — each a job."""
    principal(request).require_write()
    pairs = query_pairs(request)
    timeout = action_timeout(pairs, allowed=UPDATE_QUERY)
    query = dict(pairs)
    body = await read_json_object(request, allow_empty=True)
    check_fields(body, writable=("version", "action"), read_only=READ_ONLY)
    version = optional_string(body, "version")
    action = query.get("action") or optional_string(body, "action")
    if action is not None and action not in ACTIONS:
        raise invalid_field_value("action", action, "<pause|resume|cancel>")
    updates = service_of(request).updates
    if action is not None:
        job = await run_in_threadpool(updates.act, action)
    elif parse_bool("validate_only", query.get("validate_only", "false")):
        job = await run_in_threadpool(updates.validate, version)
    else:
        nodes = query.get("nodes_to_update")
        job = await run_in_threadpool(
            lambda: updates.start_update(
                version,
                skip_warnings=parse_bool("skip_warnings", query.get("skip_warnings", "false")),
                nodes_to_update=[n.strip() for n in nodes.split(",") if n.strip()]
                if nodes else None,
                stabilize_minutes=parse_int("stabilize_minutes", query.get(
                    "stabilize_minutes", str(DEFAULT_STABILIZE_MINUTES)), 1, 60),
            ))
    return await answer_job(request, job, timeout, done_status=200)


HISTORY = "/api/cluster/software/history"


def _history(service: Service) -> list[dict[str, Any]]:
    """``/cluster/software/history``: one record per node installation, oldest first."""
    uuids = {n.name: n.uuid for n in service.nodes.nodes()}  # one read, not one per record
    return [history_record(entry, uuids.get(entry.node)) for entry in service.profile.history()]


async def get_history(request: Request) -> Response:
    records = await run_in_threadpool(_history, service_of(request))
    return collection(request, records, schemas.SOFTWARE_HISTORY, HISTORY)


ROUTES = [
    Route("/api/cluster", get_cluster, methods=["GET"]),
    Route("/api/cluster/software", get_software, methods=["GET"]),
    Route("/api/cluster/software", patch_software, methods=["PATCH"]),
    Route(HISTORY, get_history, methods=["GET"]),
]
