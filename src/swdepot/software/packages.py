"""``cluster image package show-repository`` / ``delete``: the repository as clients see it.

Only software images are packages in ONTAP's sense (keyed by version); firmware
files are stored too but are not listed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from swdepot.errors import (
    INTERNAL_ERROR,
    PACKAGE_NOT_IN_REPOSITORY,
    REPOSITORY_EMPTY,
    Conflict,
    NotFound,
    entry_not_found,
)
from swdepot.jobs.model import Job, JobKind, JobState
from swdepot.jobs.runner import JobContext, JobRunner
from swdepot.jobs.store import JobStore
from swdepot.repository.catalog import PackageRecord
from swdepot.repository.repository import Repository

DELETE_DURING_UPDATE = 10551347
DELETE_RESTARTED = ("The package delete was interrupted because the service restarted; the "
                    "package is unchanged. Delete it again.")


class PackageService:
    """Lists, reads and deletes packages; deletion runs as a job."""

    def __init__(self, *, runner: JobRunner, jobs: JobStore, repository: Repository, node: str,
                 in_use: Callable[[str], bool] = lambda version: False) -> None:
        self._runner = runner
        self._jobs = jobs
        self._repository = repository
        self._node = node
        self._in_use = in_use

    def list(self) -> list[PackageRecord]:
        return self._repository.images()

    def get(self, version: str) -> PackageRecord:
        record = self._repository.catalog.by_version(version)
        if record is None:
            raise entry_not_found("version")
        return record

    def delete(self, version: str) -> Job:
        """Check synchronously what can be checked, then delete in a job."""
        if not self._repository.images():
            raise NotFound(REPOSITORY_EMPTY, "The repository does not contain any packages.",
                           target="version")
        record = self._repository.catalog.by_version(version)
        if record is None:
            raise NotFound(PACKAGE_NOT_IN_REPOSITORY,
                           "The required package could not be found in the repository.",
                           target="version")
        if self._in_use(version):
            raise Conflict(DELETE_DURING_UPDATE, "Package delete failed since an update is in "
                           f'progress (the update installs "{version}").', target="version")
        job = Job.new(JobKind.DELETE_PACKAGE, f"DELETE /api/cluster/software/packages/{version}",
                      node=self._node, target=version,
                      params={"record_id": record.id, "store_key": record.store_key})
        self._runner.start(job, lambda ctx: self._run(ctx, record))
        return job

    def _run(self, _ctx: JobContext, record: PackageRecord) -> str:
        self._repository.delete(record)
        return "success"

    def recover_interrupted(self, now: float) -> int:
        """After a restart: end delete jobs this node's last process left active.

        Deleting hides the record first, so a job whose package is no longer listed did
        its visible work (recovery removes any blob left behind); otherwise the package
        is still whole and listed, and the job failed.
        """
        ended = 0
        for job in self._jobs.list(visible_after=math.inf):
            if (job.kind is not JobKind.DELETE_PACKAGE or job.state.terminal
                    or job.node != self._node):
                continue
            if job.target is not None and self._repository.catalog.by_version(job.target) is None:
                key = job.params.get("store_key")
                if isinstance(key, str):  # the blobs the dead process had yet to remove
                    self._repository.remove_blobs(key)
                self._jobs.transition(job.uuid, JobState.SUCCESS, "success", 0, end_time=now)
            else:
                self._jobs.transition(job.uuid, JobState.FAILURE, DELETE_RESTARTED,
                                      INTERNAL_ERROR, end_time=now)
            ended += 1
        return ended
