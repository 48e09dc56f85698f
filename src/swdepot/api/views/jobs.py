"""``/api/cluster/jobs`` records and the job links of asynchronous answers."""

from __future__ import annotations

from typing import Any

from swdepot.api.views.ontap import iso, self_link
from swdepot.jobs.model import Job, JobKind, JobState

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
    shown = shown_target(job)
    if shown is not None:
        body["target"] = shown
    body["_links"] = self_link(f"{JOBS}/{job.uuid}")
    return body


def shown_target(job: Job) -> str | None:
    """What the job acts on, as every user may see it (swdepot's ``target`` field): a
    download's URL without its query or fragment (they may carry a signed URL's token;
    the user information was never kept), an upload's file name, a deleted version."""
    if job.target is None or job.kind is JobKind.SOFTWARE:
        return None
    if job.kind is JobKind.DOWNLOAD:
        return job.target.split("#", 1)[0].split("?", 1)[0]
    return job.target


def job_reference(uuid: str) -> dict[str, Any]:
    """A job named in another record: its uuid and link (``job_link`` in ONTAP's schema)."""
    return {"uuid": uuid, "_links": self_link(f"{JOBS}/{uuid}")}


def job_link(job: Job) -> dict[str, Any]:
    """The body of a 202/201/200 answer that started ``job`` (``job_link_response``)."""
    return {"job": job_reference(job.uuid)}
