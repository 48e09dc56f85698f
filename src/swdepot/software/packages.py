"""``cluster image package show-repository`` / ``delete``: the repository as clients see it.

Only software images are packages in ONTAP's sense (keyed by version); firmware
files are stored too but are not listed here.
"""

from __future__ import annotations

from collections.abc import Callable

from swdepot.errors import (
    DELETE_DURING_UPDATE,
    INTERNAL_ERROR,
    PACKAGE_NOT_IN_REPOSITORY,
    REPOSITORY_EMPTY,
    Conflict,
    NotFound,
    OntapError,
    entry_not_found,
)
from swdepot.jobs.model import Job, JobKind
from swdepot.jobs.runner import JobContext, JobRunner
from swdepot.repository.catalog import PackageRecord
from swdepot.repository.repository import Repository

DELETE_RESTARTED = ("The package delete was interrupted because the service restarted; the "
                    "package is unchanged. Delete it again.")


class PackageService:
    """Lists, reads and deletes packages; deletion runs as a job."""

    def __init__(self, *, runner: JobRunner, repository: Repository, node: str,
                 in_use: Callable[[str], bool] = lambda version: False) -> None:
        self._runner = runner
        self._repository = repository
        self._node = node
        self._in_use = in_use
        runner.register(JobKind.DELETE_PACKAGE, self._run, internal_code=INTERNAL_ERROR)

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
        self._runner.submit(job)
        return job

    def _run(self, ctx: JobContext) -> str:
        """Unlist the package, then remove its copies; whoever takes the job over after
        its process died finishes the same way (each step is idempotent)."""
        record_id, key = ctx.job.params.get("record_id"), ctx.job.params.get("store_key")
        record = (self._repository.catalog.by_id(record_id) if isinstance(record_id, str)
                  else None)
        if record is not None:
            self._repository.delete(record)
        elif isinstance(key, str):
            self._repository.remove_blobs(key)  # unlisted already: finish removing copies
        elif ctx.job.target is not None and self._repository.catalog.by_version(
                ctx.job.target) is not None:  # a row of an older version: no key kept
            raise OntapError(INTERNAL_ERROR, DELETE_RESTARTED)
        return "success"
