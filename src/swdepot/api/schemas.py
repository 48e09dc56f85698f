"""The query schema of each resource: which fields exist and which are keys."""

from __future__ import annotations

from swdepot.api.query import ResourceSchema


def _schema(fields: str, keys: tuple[str, ...], numeric: str = "") -> ResourceSchema:
    return ResourceSchema(fields=frozenset(fields.split()), key_fields=keys,
                          numeric_fields=frozenset(numeric.split()))


JOB = _schema(
    "uuid description state message code start_time end_time error error.code error.message "
    "node node.name _links",
    ("uuid",),
    numeric="code",
)
PACKAGE = _schema(
    "version create_time file_name kind size sha256 product signer _links",
    ("version",),
    numeric="size",
)
DOWNLOAD = _schema(
    "state message code bytes_done bytes_total speed job job.uuid _links",
    (),
)
NODE = _schema(
    "uuid name state membership model uptime version version.full version.generation "
    "version.major version.minor _links",
    ("uuid", "name"),
    numeric="uptime",
)
SOFTWARE_HISTORY = _schema(
    "node node.name node.uuid node._links start_time end_time from_version to_version state",
    ("node", "start_time"),  # [I] no key of its own: who and when name a record
)
CLUSTER = _schema(
    "name uuid version version.full version.generation version.major version.minor _links",
    (),
)
SOFTWARE = _schema(
    "version pending_version state nodes nodes.name nodes.version start_time end_time "
    "elapsed_duration estimated_duration validation_results validation_results.update_check "
    "validation_results.status validation_results.issue validation_results.issue.message "
    "validation_results.action validation_results.action.message update_details "
    "update_details.phase update_details.state update_details.node update_details.node.name "
    "update_details.elapsed_duration update_details.estimated_duration status_details "
    "status_details.name status_details.state status_details.node status_details.node.name "
    "status_details.start_time status_details.end_time status_details.issue "
    "status_details.issue.message _links",
    (),
)
