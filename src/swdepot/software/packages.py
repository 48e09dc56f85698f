"""``cluster image package show-repository`` / ``delete``: the repository as clients see it.

Only software images are packages in ONTAP's sense (keyed by version); firmware
files are stored too but are not listed here.
"""

from __future__ import annotations

from collections.abc import Callable

from swdepot.errors import (
    PACKAGE_NOT_IN_REPOSITORY,
    REPOSITORY_EMPTY,
    Conflict,
    NotFound,
    entry_not_found,
)
from swdepot.jobs.model import Job, JobKind
from swdepot.jobs.runner import JobContext, JobRunner
from swdepot.repository.catalog import PackageRecord
from swdepot.repository.repository import Repository

DELETE_DURING_UPDATE = 10551347


class PackageService:
    """Lists, reads and deletes packages; deletion runs as a job."""

    def __init__(self, *, runner: JobRunner, repository: Repository, node: str,
                 in_use: Callable[[str], bool] = lambda version: False) -> None:
        self._runner = runner
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
                      node=self._node, target=version)
        self._runner.start(job, lambda ctx: self._run(ctx, record))
        return job

    def _run(self, _ctx: JobContext, record: PackageRecord) -> str:
        self._repository.delete(record)
        return "success"
