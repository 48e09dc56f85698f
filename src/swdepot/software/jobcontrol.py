"""``PATCH /api/cluster/jobs/{uuid}?action=…``: what a client may do to a running job.

Only package transfers (downloads and uploads) can be canceled: the request is written
to the job's row, whichever process runs the job stops the transfer within a second
(``jobs/runner.py``) and removes its staged data, and the job ends as ``failure`` (ONTAP: "after a
successful cancel request the job state changes to either success or failure").
No job here can be paused, so ``pause`` is 458783 and ``resume`` 458776.
"""

from __future__ import annotations

from swdepot.errors import (
    JOB_CANCEL_UNSUPPORTED,
    JOB_NOT_RUNNING,
    JOB_PAUSE_UNSUPPORTED,
    JOB_TERMINAL,
    Conflict,
    entry_not_found,
)
from swdepot.jobs.model import Job, JobKind, JobState
from swdepot.jobs.runner import JobRunner

CANCELABLE = (JobKind.DOWNLOAD, JobKind.UPLOAD)


class JobControl:
    """Applies ``cancel``/``pause``/``resume`` to a job, with ONTAP's refusals."""

    def __init__(self, runner: JobRunner) -> None:
        self._runner = runner

    def act(self, job: Job | None, action: str) -> None:
        if job is None:
            raise entry_not_found("uuid")
        if job.state.terminal:
            raise Conflict(JOB_TERMINAL, "Job is already in a terminal state.", target="uuid")
        if action == "pause":
            raise Conflict(JOB_PAUSE_UNSUPPORTED, "This job does not support pause.",
                           target="action")
        if action == "resume":
            raise Conflict(JOB_NOT_RUNNING, "The specified job is not currently paused.",
                           target="action")
        if job.kind not in CANCELABLE or job.state is JobState.PAUSED:
            raise Conflict(JOB_CANCEL_UNSUPPORTED, "This job does not support cancel.",
                           target="action")
        if not self._runner.cancel(job.uuid):
            # it ended between the read above and the request
            raise Conflict(JOB_TERMINAL, "Job is already in a terminal state.", target="uuid")
