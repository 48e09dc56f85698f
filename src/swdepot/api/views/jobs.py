"""``/api/cluster/jobs`` records and the job links of asynchronous answers."""

from __future__ import annotations

from typing import Any

from swdepot.api.views.ontap import iso, self_link
from swdepot.jobs.model import Job, JobState

JOBS = "/api/cluster/jobs"


def job_record(job: Job) -> dict[str, Any]:
    """The full ONTAP job object (``error`` only on failure, as since ONTAP 9.9).

    On the polled path (``api/shortcut.py``): it does no more than build the dict."""
    body: dict[str, Any] = {
        "uuid": job.uuid,
        "description": job.description,
        "state": str(job.state),
        "message": job.message,
        "code": job.code,
    }
    if job.start_time is not None:
        body["start_time"] = iso(job.start_time)
    if job.end_time is not None:
        body["end_time"] = iso(job.end_time)
    if job.state is JobState.FAILURE:
        body["error"] = {"code": str(job.code), "message": job.message}
    if job.node:
        body["node"] = {"name": job.node}
    body["_links"] = self_link(f"{JOBS}/{job.uuid}")
    return body


def job_reference(uuid: str) -> dict[str, Any]:
    """A job named in another record: its uuid and link (``job_link`` in ONTAP's schema)."""
    return {"uuid": uuid, "_links": self_link(f"{JOBS}/{uuid}")}


def job_link(job: Job) -> dict[str, Any]:
    """The body of a 202/201/200 answer that started ``job`` (``job_link_response``)."""
    return {"job": job_reference(job.uuid)}
