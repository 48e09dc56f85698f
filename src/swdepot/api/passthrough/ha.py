"""``cluster ha show`` / ``cluster ha modify``: cluster high availability of two nodes.

NetApp's upgrade sample (``ndu_upgrade.py``) runs ``cluster ha modify`` with
``{"configured": "true"}`` before every update of a multi-node cluster, and Ansible's
``na_ontap_cluster_ha`` reads ``configured`` back as a JSON boolean.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api.http import principal, respond
from swdepot.api.passthrough.command import PREFIX, Param, body, cli_query, show, take
from swdepot.api.query import ResourceSchema, matches, parse_query
from swdepot.api.routes.common import service_of
from swdepot.errors import NO_VALUES, InvalidInput

HA = PREFIX + "cluster/ha"
SCHEMA = ResourceSchema(fields=frozenset({"configured"}), key_fields=())
MODIFIABLE = (Param("configured", "bool"),)


def _record(request: Request) -> dict[str, Any]:
    return {"configured": service_of(request).profile.ha_configured()}


async def ha_show(request: Request) -> Response:
    """One record without keys: ``fields=configured`` shows the value."""
    return await show(request, [_record(request)], SCHEMA)


async def ha_modify(request: Request) -> Response:
    """The query selects (``configured=false`` modifies only if it is off), the body
    holds the new value; the answer counts the records changed."""
    principal(request).require_write()
    ctl = cli_query(request)
    values = take(MODIFIABLE, await body(request))
    if not values:
        raise InvalidInput(NO_VALUES, "You must provide one or more values to apply your "
                           "changes.")
    query = parse_query(ctl.pairs, SCHEMA, collection=True)
    if not matches(_record(request), query.filters):
        return respond(request, {"num_records": 0})
    updates = service_of(request).updates
    warning = await run_in_threadpool(updates.configure_ha, values["configured"])
    return respond(request, {"num_records": 1, **({"cli_output": warning + "\n"}
                                                   if warning else {})})


ROUTES = [
    Route(HA, ha_show, methods=["GET"]),
    Route(HA, ha_modify, methods=["PATCH"]),
]
