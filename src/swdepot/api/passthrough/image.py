"""``cluster image …``: the package repository and the software update, CLI-shaped.

Each command calls what its REST twin calls (``/cluster/software/download``,
``/packages``, ``PATCH /cluster/software``), so both answer alike; only names and shapes
differ. Field names are those of ONTAP's command reference (``docs/compatibility.md``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api.http import principal, refuse_body, respond
from swdepot.api.passthrough.command import (
    PREFIX,
    Param,
    action_arguments,
    answer_jobs,
    cli_query,
    iso_duration,
    show,
    take,
    timeout_of,
)
from swdepot.api.query import ResourceSchema, matches, parse_query
from swdepot.api.routes.common import service_of
from swdepot.api.views.ontap import iso
from swdepot.errors import INVALID_VALUE, Conflict
from swdepot.jobs.model import Job
from swdepot.software.update import (
    NODE_UPDATES,
    POST_CHECKS,
    PRE_CHECKS,
    Step,
    Update,
    UpdateState,
    ValidationResult,
)

IMAGE = PREFIX + "cluster/image"
PACKAGE = IMAGE + "/package"


def _schema(fields: str, keys: tuple[str, ...]) -> ResourceSchema:
    return ResourceSchema(fields=frozenset(fields.split()), key_fields=keys)


SHOW = _schema("node version date", ("node",))
REPOSITORY = _schema("download_ver component_name component_version package_build_time",
                     ("download_ver",))
PROGRESS = _schema("ndu_phase phase_status phase_comments estimated_duration elapsed_duration",
                   ("ndu_phase",))
VERSION = _schema("version", ("version",))

# ``-ndu-phase`` values, as the passthrough writes enums (lowercase, underscores)
NDU_PHASES = {PRE_CHECKS: "validation", NODE_UPDATES: "ontap_updates",
              POST_CHECKS: "post_update_checks"}
PAUSED = (UpdateState.PAUSED_BY_USER, UpdateState.PAUSED_ON_ERROR)
# ``progress-status`` of ZAPI's cluster-image-get-download-progress: Ansible waits while
# ``…_running`` and expects ``…_complete``; the other two are [I]
PROGRESS_STATUS = {"not_started": "async_pkg_get_phase_none",
                   "running": "async_pkg_get_phase_running",
                   "success": "async_pkg_get_phase_complete",
                   "failure": "async_pkg_get_phase_failed"}
DOWNLOADED = "Package download completed.\nPackage processing completed.\n"
DELETED = "Package Delete Operation Completed Successfully\n"
_QUERY_OPERATOR = re.compile(r"[*|!<>]|\.\.")


# --- show commands ---------------------------------------------------------------------


async def image_show(request: Request) -> Response:
    """``cluster image show``: each node's version and when it was installed."""
    profile = service_of(request).profile
    installed = profile.installed_at()
    records = [{"node": node, "version": version,
                **({"date": iso(installed[node])} if node in installed else {})}
               for node, version in profile.node_versions().items()]
    return await show(request, records, SHOW)


async def repository_show(request: Request) -> Response:
    """``cluster image package show-repository``: one record per ONTAP image."""
    records = [{"download_ver": r.version, "component_name": [r.product or "ONTAP"],
                "component_version": [r.version]}
               for r in service_of(request).packages.list()]
    return await show(request, records, REPOSITORY)


async def update_progress(request: Request) -> Response:
    """``cluster image show-update-progress``: one record per phase of the last update."""
    update = service_of(request).profile.current_update()
    records = [] if update is None else _phases(update, time.time())
    return await show(request, records, PROGRESS)


def _phases(update: Update, now: float) -> list[dict[str, Any]]:
    current = update.step
    records = []
    for phase, name in NDU_PHASES.items():
        steps = [s for s in update.steps if s.phase == phase]
        if not steps:
            continue
        status = _phase_status(steps)
        if current is not None and current.phase == phase and (
                update.state in PAUSED or update.state in (UpdateState.PAUSE_PENDING,
                                                           UpdateState.CANCEL_PENDING)):
            status = str(update.state)
        start = next((s.start_time for s in steps if s.start_time is not None), None)
        end = steps[-1].end_time if status == "completed" else update.end_time
        record: dict[str, Any] = {
            "ndu_phase": name, "phase_status": status,
            "estimated_duration": iso_duration(sum(s.seconds for s in steps)),
            "elapsed_duration": iso_duration(0 if start is None else (end or now) - start),
        }
        comments = [s.message for s in steps if s.message]
        if comments:
            record["phase_comments"] = comments[-1]
        records.append(record)
    return records


def _phase_status(steps: Sequence[Step]) -> str:
    """A phase's ``phase-status`` from its steps' states, across every node."""
    states = {s.state for s in steps}
    for single in ("completed", "waiting"):
        if states == {single}:
            return single
    for decisive in ("failed", "canceled"):
        if decisive in states and "in_progress" not in states:
            return decisive
    return "in_progress"


# --- the package repository ------------------------------------------------------------

URL = (Param("url", required=True),)


async def package_get(request: Request) -> Response:
    """``cluster image package get -url``: the download job of POST /software/download."""
    principal(request).require_write()
    values, ctl = await action_arguments(request, URL)
    job = await run_in_threadpool(service_of(request).downloads.start, values["url"])
    return await answer_jobs(request, [job], timeout_of(ctl, waits=request.method == "PATCH"),
                             queued="Package download", done=DOWNLOADED)


async def package_delete(request: Request) -> Response:
    """``cluster image package delete -version``: one delete job per matching version
    (the version is a query: ``9.16.*`` deletes every 9.16 image)."""
    principal(request).require_write()
    await refuse_body(request)
    ctl = cli_query(request)
    take((Param("version", required=True),), dict(ctl.pairs))
    query = parse_query(ctl.pairs, VERSION, collection=True)
    packages = service_of(request).packages
    versions = [r.version for r in packages.list() if matches({"version": r.version},
                                                              query.filters)]
    literal = dict(ctl.pairs)["version"]
    if not versions and not _QUERY_OPERATOR.search(literal):
        versions = [literal]  # let the delete itself say why (empty, not there)
    if not versions:
        return respond(request, {"num_records": 0})
    jobs = [await run_in_threadpool(packages.delete, v) for v in versions]
    return await answer_jobs(request, jobs, timeout_of(ctl, waits=True),
                             queued="Package delete", done=DELETED, plural=True)


async def check_download_progress(request: Request) -> Response:
    """``cluster image package check-download-progress``: the latest download, as
    ``GET /cluster/software/download`` reports it, in ZAPI's field names."""
    await action_arguments(request, ())
    status = service_of(request).downloads.status()
    record = {"progress_status": PROGRESS_STATUS[status.state],
              "progress_details": status.message}
    if status.state == "failure":
        record["failure_reason"] = status.message
    return respond(request, {"num_records": 1, "records": [record]})


# --- validation and the update ---------------------------------------------------------

VALIDATE = (Param("version"), Param("nodes", "list"), Param("rolling", "bool"),
            Param("show_validation_details", "bool"),
            Param("skip_nodes_at_target_version", "bool"))
UPDATE = (Param("version", required=True), Param("nodes", "list"),
          Param("estimate_only", "bool"), Param("ignore_validation_warning", "bool"),
          Param("stabilize_minutes", "int", lo=1, hi=60), Param("skip_confirmation", "bool"),
          Param("force_rolling", "bool"), Param("show_validation_details", "bool"))
DEFAULT_STABILIZE_MINUTES = 8


async def validate(request: Request) -> Response:
    """``cluster image validate``: the checks of ``validate_only=true``, then the table
    the CLI prints."""
    principal(request).require_write()
    values, ctl = await action_arguments(request, VALIDATE)
    service = service_of(request)
    job = await run_in_threadpool(service.updates.validate, values.get("version"),
                                  values.get("nodes"))
    return await answer_jobs(request, [job], timeout_of(ctl, waits=request.method == "PATCH"),
                             queued="Validation", done=lambda: validation_table(
                                 service.profile.validation_results() or ()))


def validation_table(results: Sequence[ValidationResult]) -> str:
    """The CLI's check table; only checks that found something have a row here."""
    lines = ["It can take several minutes to complete validation...", "",
             f"{'Pre-update Check':<30} {'Status':<9} Error-Action",
             f"{'-' * 30} {'-' * 9} {'-' * 38}"]
    for result in results:
        lines.append(f"{result.update_check:<30} {result.status.capitalize():<9} "
                     f"Error: {result.issue}")
        lines.append(f"{'':<40} Action: {result.action}")
    statuses = {r.status for r in results}
    overall = "Error" if "error" in statuses else "Warning" if statuses else "OK"
    lines.append(f"{'Overall Status':<30} {overall:<9} {overall if statuses else ''}".rstrip())
    return "\n".join(lines) + "\n"


async def image_update(request: Request) -> Response:
    """``cluster image update``: starts the rolling update (``-estimate-only``: plans it
    and shows the plan, starting nothing)."""
    principal(request).require_write()
    values, ctl = await action_arguments(request, UPDATE)
    updates = service_of(request).updates
    options = {"skip_warnings": values.get("ignore_validation_warning", False),
               "nodes_to_update": values.get("nodes"),
               "stabilize_minutes": values.get("stabilize_minutes",
                                               DEFAULT_STABILIZE_MINUTES)}
    if values.get("estimate_only"):
        update, _ = await run_in_threadpool(
            lambda: updates.prepare_update(values["version"], **options))
        return respond(request, {"cli_output": estimate_table(update)})
    job = await run_in_threadpool(lambda: updates.start_update(values["version"], **options))
    return await answer_jobs(request, [job], timeout_of(ctl, waits=True),
                             queued="Software update", done="Starting update...\n")


def estimate_table(update: Update) -> str:
    lines = [f"{'Update Phase':<22} {'Node':<20} {'Step':<28} Estimated Duration",
             f"{'-' * 22} {'-' * 20} {'-' * 28} {'-' * 18}"]
    lines += [f"{s.phase:<22} {s.node:<20} {s.name:<28} {iso_duration(s.seconds)}"
              for s in update.steps]
    total = iso_duration(sum(s.seconds for s in update.steps))
    lines.append(f"Estimated duration of the update to {update.version}: {total}")
    return "\n".join(lines) + "\n"


def _action(action: str, params: Sequence[Param], done: str,
            check: Callable[[Update | None], None] = lambda update: None
            ) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        principal(request).require_write()
        _, ctl = await action_arguments(request, params)
        service = service_of(request)
        check(service.profile.current_update())
        job: Job = await run_in_threadpool(service.updates.act, action)
        return await answer_jobs(request, [job], timeout_of(ctl, waits=True),
                                 queued=f"Update {action}", done=done)
    endpoint.__doc__ = f"``cluster image {action}-update``."
    return endpoint


def _paused_only(update: Update | None) -> None:
    """ONTAP's command reference: "An update can only be canceled if it is in a paused
    state." (``PATCH /cluster/software`` also cancels a moving update)."""
    if update is not None and update.state.active and update.state not in PAUSED:
        raise Conflict(INVALID_VALUE, "An update can only be canceled if it is in a paused "
                       "state.", target="cancel-update")


ROUTES = [
    Route(IMAGE, image_show, methods=["GET"]),
    Route(IMAGE + "/update-progress", update_progress, methods=["GET"]),
    Route(PACKAGE + "/repository", repository_show, methods=["GET"]),
    Route(PACKAGE, package_delete, methods=["DELETE"]),
    Route(PACKAGE + "/get", package_get, methods=["POST", "PATCH"]),
    Route(PACKAGE + "/check-download-progress", check_download_progress,
          methods=["POST", "PATCH"]),
    Route(IMAGE + "/validate", validate, methods=["POST", "PATCH"]),
    Route(IMAGE + "/update", image_update, methods=["POST", "PATCH"]),
    Route(IMAGE + "/pause-update", _action(
        "pause", (), "Info: Pausing update. It may take a few minutes to finish pausing "
        "the update\n"), methods=["POST", "PATCH"]),
    Route(IMAGE + "/resume-update", _action(
        "resume", (Param("ignore_post_update_checks_failures", "bool"),
                   Param("skip_firmware_update_checks", "bool")),
        "Info: Resuming update...\n"), methods=["POST", "PATCH"]),
    Route(IMAGE + "/cancel-update", _action(
        "cancel", (), "Info: Canceling update. It may take a few minutes to finish "
        "canceling the update\n", _paused_only), methods=["POST", "PATCH"]),
]
