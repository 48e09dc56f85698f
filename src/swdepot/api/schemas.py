"""The query schema of each resource: which fields exist and which are keys."""

from __future__ import annotations

from swdepot.api.query import ResourceSchema


def _schema(fields: str, keys: tuple[str, ...]) -> ResourceSchema:
    return ResourceSchema(fields=frozenset(fields.split()), key_fields=keys)


JOB = _schema(
    "uuid description state message code start_time end_time error error.code error.message "
    "node node.name _links",
    ("uuid",),
)
PACKAGE = _schema(
    "version create_time file_name kind size sha256 product signer _links",
    ("version",),
)
DOWNLOAD = _schema(
    "state message code bytes_done bytes_total speed job job.uuid _links",
    (),
)
CLUSTER = _schema(
    "name uuid version version.full version.generation version.major version.minor _links",
    (),
)
SOFTWARE = _schema(
    "version state nodes nodes.name nodes.version _links",
    (),
)
