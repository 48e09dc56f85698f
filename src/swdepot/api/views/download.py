"""``GET /api/cluster/software/download``: the latest download's status."""

from __future__ import annotations

from typing import Any

from swdepot.api.views.jobs import job_reference
from swdepot.api.views.ontap import self_link
from swdepot.software.download import DownloadStatus

DOWNLOAD = "/api/cluster/software/download"


def download_record(status: DownloadStatus) -> dict[str, Any]:
    """ONTAP's ``state``, ``message`` and ``code``; with a job, its byte progress and link.

    On the polled path (``api/shortcut.py``): it does no more than build the dict."""
    body: dict[str, Any] = {"state": status.state, "message": status.message,
                            "code": status.code}
    if status.job_uuid is not None:
        body["bytes_done"] = status.bytes_done
        body["bytes_total"] = status.bytes_total
        body["speed"] = status.speed
        body["job"] = job_reference(status.job_uuid)
    body["_links"] = self_link(DOWNLOAD)
    return body
