"""Every field netapp-ontap 9.19 may ask for is a valid field here (issue 17).

The fields come from the installed library's models (each resource's ``gettable_fields``,
nested models followed), not from a copied list: a newer netapp-ontap that reads more
fails here first. A field swdepot leaves out is absent from the answer, and a filter on
it matches no record, as on an ONTAP that has no value for it.
"""

from __future__ import annotations

import importlib
from typing import Any

import marshmallow.fields as mf
import pytest

from pkgfactory import make_package
from swdepot.api import schemas

# resource module, schema class, swdepot's schema, its served and accepted-only patterns
RESOURCES = {
    "software": ("software", "SoftwareSchema", schemas.SOFTWARE, schemas.SOFTWARE_SERVED,
                 schemas.SOFTWARE_ACCEPTED),
    "jobs": ("job", "JobSchema", schemas.JOB, schemas.JOB_SERVED, schemas.JOB_ACCEPTED),
    "cluster": ("cluster", "ClusterSchema", schemas.CLUSTER, schemas.CLUSTER_SERVED,
                schemas.CLUSTER_ACCEPTED),
    "nodes": ("node", "NodeSchema", schemas.NODE, schemas.NODE_SERVED, schemas.NODE_ACCEPTED),
}
EXTRAS = {"software": {"start_time", "end_time"}, "jobs": {"target"}}  # swdepot's additions


def _nested(field: mf.Field) -> type | None:
    if isinstance(field, mf.List):
        field = field.inner
    if not isinstance(field, mf.Nested):
        return None
    nested = field.nested
    if callable(nested) and not isinstance(nested, type):
        nested = nested()  # netapp-ontap's lazy imports
    return nested if isinstance(nested, type) else type(nested)


def gettable(schema: type, prefix: str = "", seen: tuple[type, ...] = ()) -> set[str]:
    """The dotted ``fields`` names a netapp-ontap schema reads: its ``gettable_fields``
    (``svm.name`` names one field of a reference), nested objects down to their leaves;
    HAL ``_links`` are one name."""
    found: set[str] = set()
    for entry in schema.gettable_fields:
        found |= _entry(schema, entry.split("."), prefix, (*seen, schema))
    return found


def _entry(schema: type, names: list[str], prefix: str, seen: tuple[type, ...]) -> set[str]:
    field = schema().declared_fields.get(names[0])
    path = prefix + (names[0] if field is None else field.data_key or names[0])
    nested = None if field is None else _nested(field)
    if path.endswith("_links") or nested is None or nested in seen:
        return {path}
    if len(names) > 1:
        return {path} | _entry(nested, names[1:], path + ".", seen)
    return {path} | gettable(nested, path + ".", seen)


def model_fields(resource: str) -> set[str]:
    module, name = RESOURCES[resource][:2]
    return gettable(getattr(importlib.import_module(f"netapp_ontap.resources.{module}"), name))


@pytest.mark.parametrize("resource", RESOURCES)
def test_the_schema_names_every_model_field_and_invents_none(resource):
    model = model_fields(resource)
    _, _, schema, served, accepted = RESOURCES[resource]
    assert model - schema.fields == set(), "netapp-ontap reads fields swdepot refuses"
    assert schemas.paths(accepted) - model == set(), "accepted, but in no model"
    served_paths, accepted_paths = schemas.paths(served), schemas.paths(accepted)
    assert served_paths - model == EXTRAS.get(resource, set())
    for both in served_paths & accepted_paths:  # only objects holding fields of either kind
        assert any(p.startswith(both + ".") for p in served_paths), both


def _each(resource: str) -> list[str]:
    return sorted(model_fields(resource))


def test_netapp_ontap_gets_every_model_field(ontap, api, content_dir, http_server_noauth):
    """``get(fields=<each>)`` through the real client, on every resource and record kind."""
    from netapp_ontap.resources import Cluster, Job, Node, Software

    make_package(content_dir, "9.17.1.tgz", "9.17.1", size=4096)
    job = api.download(http_server_noauth.url("9.17.1.tgz"))
    node = api.get("/api/cluster/nodes").json()["records"][0]["uuid"]
    for name in _each("software"):
        Software().get(fields=name)
    for name in _each("cluster"):
        Cluster().get(fields=name)
    for name in _each("nodes"):
        assert len(list(Node.get_collection(fields=name))) == 2, name
        Node(uuid=node).get(fields=name)
    for name in _each("jobs"):
        assert list(Job.get_collection(fields=name)), name
        Job(uuid=job["uuid"]).get(fields=name)


def _leaves(obj: Any, prefix: str = "") -> set[str]:
    if isinstance(obj, list):
        return {leaf for item in obj for leaf in _leaves(item, prefix)}
    if not isinstance(obj, dict):
        return {prefix.rstrip(".")}
    return {leaf for key, value in obj.items() if key != "_links"
            for leaf in _leaves(value, f"{prefix}{key}.")}


def _left_out(served: tuple[str, ...], accepted: tuple[str, ...]) -> frozenset[str]:
    return schemas.paths(accepted) - schemas.paths(served)


def test_a_field_left_out_is_absent_and_matches_no_record(api, content_dir,
                                                           http_server_noauth):
    make_package(content_dir, "9.17.1.tgz", "9.17.1", size=4096)
    api.download(http_server_noauth.url("9.17.1.tgz"))
    for path, served, accepted in (
            ("/api/cluster/software", schemas.SOFTWARE_SERVED, schemas.SOFTWARE_ACCEPTED),
            ("/api/cluster", schemas.CLUSTER_SERVED, schemas.CLUSTER_ACCEPTED)):
        left_out = _left_out(served, accepted)
        for name in sorted(left_out):
            body = api.get(f"{path}?fields={name}").json()
            assert _leaves(body) <= {""}, (name, body)  # _links, and nodes' empty objects
        assert _leaves(api.get(f"{path}?fields=**").json()) & left_out == set()
    for path, served, accepted, filters in (
            ("/api/cluster/nodes", schemas.NODE_SERVED, schemas.NODE_ACCEPTED,
             ("serial_number", "service_processor.state", "ha.enabled")),
            ("/api/cluster/jobs", schemas.JOB_SERVED, schemas.JOB_ACCEPTED,
             ("svm.name", "error.arguments.code"))):
        records = api.get(f"{path}?fields=**").json()["records"]
        left_out = _left_out(served, accepted)
        assert records and all(_leaves(r) & left_out == set() for r in records)
        for name in filters:
            assert api.get(f"{path}?{name}=*").json()["num_records"] == 0, name
    assert api.get("/api/cluster/nodes?model=swdepot").json()["num_records"] == 2


def test_what_ansible_reads_of_a_node(ontap):
    """``na_ontap_firmware_upgrade`` with ``reboot_sp`` reads ``service_processor.state``."""
    from netapp_ontap.resources import Node

    nodes = list(Node.get_collection(fields="service_processor.state,serial_number,ha"))
    assert [n.name for n in nodes] == ["swdepot-01", "swdepot-02"]
    assert all(not hasattr(n, "service_processor") for n in nodes)
