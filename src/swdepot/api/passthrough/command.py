"""The passthrough's conventions, shared by every command.

- **Names.** Parameters and fields are CLI names; a client may write them with dashes
  (``ignore-validation-warning``) or underscores, answers always use underscores
  (ONTAP: "REST converts hyphens (-) in CLI parameter names to underscores").
- **Where inputs go.** POST: in the body; a field in the query is 262211. GET: the
  ``fields`` to show (key fields always, nothing else unless asked; ``fields=*`` is
  262220) and queries on any field. PATCH: the query selects, the body holds the new
  values; an action verb may be sent as PATCH with its parameters in the query (Ansible
  and netapp-ontap's ``CLI().execute(cmd, **kwargs)`` do). DELETE: the query.
- **``privilege_level``** (``admin``, ``advanced``, ``diagnostic``) is accepted on every
  request: netapp-ontap sends it on each. The commands here all run at admin level.
- **Jobs.** A command that runs as a job answers 202 with ``job`` and ONTAP's
  ``cli_output`` "[Job …] Job is queued: …", unless it ended within ``return_timeout``:
  then 200 with what the CLI prints at its end, or the job's error. POST does not wait
  by default, PATCH and DELETE wait up to 15 seconds (ONTAP's documented defaults);
  commands that are synchronous in ONTAP's CLI wait like PATCH.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from swdepot.api.http import (
    http_status,
    query_pairs,
    read_json_object,
    refuse_body,
    respond,
)
from swdepot.api.query import (
    DEFAULT_RETURN_TIMEOUT,
    MAX_RETURN_TIMEOUT,
    ResourceSchema,
    page,
    parse_bool,
    parse_int,
    parse_query,
)
from swdepot.api.routes.common import service_of
from swdepot.api.views.jobs import job_link
from swdepot.errors import (
    FILTER_ON_POST,
    MISSING_REQUIRED,
    UNEXPECTED_ARGUMENT,
    WILDCARD_FIELDS,
    InvalidInput,
    OntapError,
    invalid_field_value,
)
from swdepot.jobs.model import Job, JobState

PREFIX = "/api/private/cli/"
PRIVILEGES = ("admin", "advanced", "diagnostic")
_CONTROL = ("privilege_level", "return_timeout", "return_records")

Kind = Literal["text", "bool", "int", "list"]


@dataclass(frozen=True)
class Param:
    """One CLI parameter: its underscored name and what values it takes."""

    name: str
    kind: Kind = "text"
    required: bool = False
    lo: int = 0
    hi: int | None = None

    def parse(self, raw: Any) -> Any:
        """A value from JSON (any type) or from the query (text), as the CLI takes it."""
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            return parse_bool(self.name, str(raw))
        if self.kind == "int":
            if isinstance(raw, int) and not isinstance(raw, bool):
                raw = str(raw)
            return parse_int(self.name, str(raw), self.lo, self.hi)
        if self.kind == "list":
            items = raw if isinstance(raw, list) else str(raw).split(",")
            if not all(isinstance(i, str) for i in items):
                raise invalid_field_value(self.name, raw, "<text>,...")
            return [i.strip() for i in items if i.strip()]
        if isinstance(raw, (dict, list)) or raw is None:
            raise invalid_field_value(self.name, raw, "<text>")
        return str(raw)


def cli_name(name: str) -> str:
    """``ignore-validation-warning`` and ``ignore_validation_warning`` are one name."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class CliQuery:
    """The query with CLI names normalised and the control parameters taken out."""

    pairs: list[tuple[str, str]]
    return_timeout: int | None


def cli_query(request: Request) -> CliQuery:
    pairs: list[tuple[str, str]] = []
    timeout: int | None = None
    for raw_name, value in query_pairs(request):
        name = cli_name(raw_name)
        if name == "privilege_level":
            if value.lower() not in PRIVILEGES:
                raise invalid_field_value(name, value, "<admin|advanced|diagnostic>")
        elif name == "return_timeout":
            timeout = parse_int(name, value, 0, MAX_RETURN_TIMEOUT)
        elif name == "return_records":
            parse_bool(name, value)
        else:
            pairs.append((name, cli_name(value) if name == "fields" else value))
    return CliQuery(pairs, timeout)


async def body(request: Request) -> dict[str, Any]:
    """The request body as CLI parameters (``{}`` when there is none)."""
    return {cli_name(k): v for k, v in (await read_json_object(request,
                                                               allow_empty=True)).items()}


def take(params: Sequence[Param], given: dict[str, Any]) -> dict[str, Any]:
    """Parse ``given`` against the command's parameters: unknown names are 262179,
    a missing required one 262212, as in the rest of ONTAP's API."""
    known = {p.name: p for p in params}
    values: dict[str, Any] = {}
    for name, raw in given.items():
        param = known.get(name)
        if param is None:
            raise InvalidInput(UNEXPECTED_ARGUMENT, f'Unexpected argument "{name}".',
                               target=name)
        values[name] = param.parse(raw)
    for param in params:
        if param.required and param.name not in values:
            raise InvalidInput(MISSING_REQUIRED, f'Missing value for required field '
                               f'"{param.name}".', target=param.name)
    return values


async def action_arguments(request: Request, params: Sequence[Param]) -> tuple[dict[str, Any],
                                                                               CliQuery]:
    """An action verb's parameters: POST takes them from the body only (a field in the
    query is 262211, as ONTAP answers); PATCH from the query and the body."""
    ctl = cli_query(request)
    given = await body(request)
    if request.method == "POST" and ctl.pairs:
        name = ctl.pairs[0][0]
        raise InvalidInput(FILTER_ON_POST, "POST request on a REST API does not support "
                           "filtering on an attribute. Attributes must be in the request "
                           "body.", target=name)
    return take(params, {**dict(ctl.pairs), **given}), ctl


async def show(request: Request, records: list[dict[str, Any]],
               schema: ResourceSchema) -> Response:
    """A ``show`` command: ``records`` with the key fields and the ``fields`` asked for,
    filtered by the query, paged as any ONTAP collection."""
    await refuse_body(request)
    ctl = cli_query(request)
    for name, value in ctl.pairs:
        if name == "fields" and any(f.strip() in ("*", "**") for f in value.split(",")):
            raise InvalidInput(WILDCARD_FIELDS, "Wildcard fields=* is not allowed for "
                               "CLI-based REST APIs.", target="fields")
    query = parse_query(ctl.pairs, schema, collection=True)
    return respond(request, page(records, query, schema, self_href=request.url.path,
                                 raw_query=query_pairs(request)))


def timeout_of(ctl: CliQuery, *, waits: bool) -> int:
    """``return_timeout`` as given, else ONTAP's default: 0 for a POST that starts a
    job, 15 seconds for what waits (PATCH, DELETE, synchronous commands)."""
    if ctl.return_timeout is not None:
        return ctl.return_timeout
    return DEFAULT_RETURN_TIMEOUT if waits else 0


async def answer_jobs(request: Request, jobs: Sequence[Job], timeout: int, *, queued: str,
                      done: str | Callable[[], str], plural: bool = False) -> Response:
    """Wait up to ``timeout`` for ``jobs``, then answer as the passthrough does.

    ``done``: what the CLI prints once they succeeded (a callable: read then).
    ``plural``: the DELETE form, ``{"jobs": [...], "num_records": N, ...}``; a failed
    job's error then sits beside ``num_records`` (the jobs that did succeed).
    """
    runner = service_of(request).runner
    ended = [await runner.wait(job.uuid, timeout) if timeout > 0 else None for job in jobs]
    links = [job_link(job)["job"] for job in jobs]
    failed = [j for j in ended if j is not None and j.state is JobState.FAILURE]
    succeeded = sum(1 for j in ended if j is not None and j.state is JobState.SUCCESS)
    answer: dict[str, Any] = ({"jobs": links, "num_records": len(jobs)} if plural
                              else {"job": links[0]})
    if failed:
        error = OntapError(failed[0].code, failed[0].message)
        if not plural:
            raise error
        return respond(request, {"num_records": succeeded, **error.to_body()},
                       http_status(error))
    if succeeded == len(jobs):
        output = done if isinstance(done, str) else await run_in_threadpool(done)
        return respond(request, {**answer, "cli_output": output})
    lines = "".join(f"[Job {job.uuid}] Job is queued: {queued}.\n" for job in jobs)
    return respond(request, {**answer, "cli_output": lines}, 202)


def iso_duration(seconds: float) -> str:
    """A duration as ISO 8601 (``PT1H2M7S``): ONTAP answers times in ISO 8601."""
    total = max(0, math.floor(seconds + 0.5))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return "PT" + parts + (f"{secs}S" if secs or not parts else "")
