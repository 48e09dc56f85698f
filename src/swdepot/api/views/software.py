"""``/api/cluster/software`` (``software_reference``) and its ``/history`` records."""

from __future__ import annotations

from typing import Any

from swdepot.api.views.ontap import iso, self_link
from swdepot.software.profile import PhaseProgress, SoftwareView, StepProgress
from swdepot.software.update import HistoryEntry, ValidationResult

SOFTWARE = "/api/cluster/software"
NODES = "/api/cluster/nodes"


def validation_record(result: ValidationResult) -> dict[str, Any]:
    """One ``validation_results[]`` (or ``post_update_checks[]``) entry."""
    return {"update_check": result.update_check, "status": result.status,
            "issue": {"message": result.issue}, "action": {"message": result.action}}


def phase_record(phase: PhaseProgress) -> dict[str, Any]:
    """One ``update_details[]`` entry."""
    return {"phase": phase.phase, "state": phase.state, "node": {"name": phase.node},
            "estimated_duration": phase.estimated_seconds,
            "elapsed_duration": phase.elapsed_seconds}


def step_record(step: StepProgress) -> dict[str, Any]:
    """One ``status_details[]`` entry: ``issue`` when the step has a message, ``action``
    when it failed with one."""
    entry: dict[str, Any] = {"name": step.name, "state": step.state,
                             "node": {"name": step.node}}
    if step.start_time is not None:
        entry["start_time"] = iso(step.start_time)
    if step.end_time is not None:
        entry["end_time"] = iso(step.end_time)
    if step.message:
        entry["issue"] = {"code": step.code, "message": step.message}
    if step.action:
        entry["action"] = {"code": step.code, "message": step.action}
    return entry


def software_record(view: SoftwareView) -> dict[str, Any]:
    """``/api/cluster/software``: a field the view has no value for is absent."""
    body: dict[str, Any] = {
        "version": view.version,
        "state": view.state,
        "nodes": [{"name": n.name, "version": n.version, "model": n.model}
                  for n in view.nodes],
    }
    if view.pending_version is not None:
        body["pending_version"] = view.pending_version
    if view.start_time is not None:
        body["start_time"] = iso(view.start_time)
    if view.end_time is not None:
        body["end_time"] = iso(view.end_time)
    if view.elapsed_seconds is not None:
        body["elapsed_duration"] = view.elapsed_seconds
    if view.estimated_seconds is not None:
        body["estimated_duration"] = view.estimated_seconds
    if view.phases is not None:
        body["update_details"] = [phase_record(p) for p in view.phases]
    if view.steps is not None:
        body["status_details"] = [step_record(s) for s in view.steps]
    if view.validation_results is not None:
        body["validation_results"] = [validation_record(r) for r in view.validation_results]
    if view.post_update_checks:
        body["post_update_checks"] = [validation_record(r) for r in view.post_update_checks]
    body["_links"] = self_link(SOFTWARE)
    return body


def history_record(entry: HistoryEntry, node_uuid: str | None) -> dict[str, Any]:
    """One ``/cluster/software/history`` record; the node's uuid and link when known."""
    node: dict[str, Any] = {"name": entry.node}
    if node_uuid is not None:
        node |= {"uuid": node_uuid, "_links": self_link(f"{NODES}/{node_uuid}")}
    return {"node": node, "start_time": iso(entry.start_time),
            "end_time": iso(entry.end_time), "from_version": entry.from_version,
            "to_version": entry.to_version, "state": entry.state}
