"""``cluster image package get``: start a download job and report its status.

The request is validated synchronously (URL, duplicates, one download at a time,
no update running) as ONTAP does before it creates a job. The job then streams the
package into both node stores while it is hashed and inspected, and publishes it.
The server password is kept in the job's row only sealed, and wiped when the job ends.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swdepot.errors import (
    DOWNLOAD_FAILED,
    DOWNLOAD_INTERNAL,
    DOWNLOAD_NOT_STARTED,
    DOWNLOAD_RUNNING,
    UPDATE_IN_PROGRESS,
    Conflict,
    OntapError,
    Unavailable,
)
from swdepot.jobs.model import Job, JobKind, JobState
from swdepot.jobs.runner import JobContext, JobRunner
from swdepot.jobs.store import JobStore, LeaseLost, SlotTaken
from swdepot.repository.catalog import PackageRecord
from swdepot.repository.repository import Repository
from swdepot.sealing import SealBroken, Sealer
from swdepot.software.ingest import (
    DOWNLOADING,
    Intake,
    IntakeEvents,
    IntakeRunner,
    PackageIngest,
    ResumePoint,
)
from swdepot.software.ingest_process import IntakeLost
from swdepot.transfer.control import Control, Validator
from swdepot.transfer.engine import Engine
from swdepot.transfer.process import ForkingEngine
from swdepot.transfer.sink import BLOCK_SIZE, PackageSink
from swdepot.transfer.url import Credentials, DownloadUrl, parse_download_url

log = logging.getLogger(__name__)

DESCRIPTION = "POST /api/cluster/software/download"
IN_PROGRESS = DOWNLOADING
ALREADY_RUNNING = "Software get operation already in progress."
COMPLETED = "Package download completed."
INTAKE_RESTARTS = 2  # new intake processes for one job whose intake died
RESTARTED = ("Package download failed: the download was interrupted because the service "
             "restarted. Start it again.")  # a job row without a URL: only from old versions


@dataclass(frozen=True)
class DownloadStatus:
    """The latest download (``GET /api/cluster/software/download``): its state, message and
    code as ONTAP reports them; with a job, that job's byte progress and uuid."""

    state: str
    message: str
    code: int
    bytes_done: int | None = None
    bytes_total: int | None = None
    speed: float | None = None
    job_uuid: str | None = None


class DownloadService:
    """Starts package downloads and answers for their status.

    A download is a durable job: its row holds the URL, the user name and the password
    sealed (``sealing.py``), so that whichever process claims it — this one at once,
    another if this one has no free worker, or the one that takes it over after its
    process died — can run it from the row alone.
    """

    def __init__(self, *, runner: JobRunner, jobs: JobStore, repository: Repository,
                 ingest: PackageIngest, engine: Engine | ForkingEngine, node: str,
                 sealer: Sealer,
                 update_in_progress: Callable[[], bool] = lambda: False,
                 elsewhere: IntakeRunner | None = None) -> None:
        """``elsewhere``: where the intake runs (a worker process), if not on the job's
        thread; it runs :meth:`intake` there, with ``engine`` (a ``ForkingEngine``)."""
        self._runner = runner
        self._jobs = jobs
        self._repository = repository
        self._ingest = ingest
        self._engine = engine
        self._node = node
        self._sealer = sealer
        self._update_in_progress = update_in_progress
        self._elsewhere = elsewhere
        runner.register(JobKind.DOWNLOAD, self._run, internal_code=DOWNLOAD_INTERNAL)

    def start(self, raw_url: str, username: str | None = None,
              password: str | None = None) -> Job:
        """Validate the request and start the job (or raise the ONTAP error)."""
        url, embedded = parse_download_url(raw_url)
        credentials = Credentials(
            username if username is not None else embedded.username,
            password if password is not None else embedded.password,
        )
        if self._update_in_progress():
            raise update_running()
        if self._jobs.active(JobKind.DOWNLOAD) is not None:
            raise already_running()
        self._repository.check_name_free(url.file_name)
        job = Job.new(JobKind.DOWNLOAD, DESCRIPTION, node=self._node, target=url.url)
        params: dict[str, Any] = {"url": url.url, "username": credentials.username}
        if credentials.password is not None:
            params["secret"] = self._sealer.seal(credentials.password, job.uuid)
        job = job.with_changes(message=IN_PROGRESS, params=params)
        try:
            self._runner.submit(job, exclusive=True)
        except SlotTaken:
            raise already_running() from None
        return job

    def _run(self, ctx: JobContext) -> str:
        """The job body: transfer, inspect and publish in one pass over the bytes.

        Taken over from a process that died, it first looks at what that process got
        done: a package it published means success; blobs it committed without
        recording them are removed; then it downloads again.
        """
        job = ctx.job
        url, credentials = self._source(job.uuid, job.params, job.target)
        resume: ResumePoint | None = None
        known: Validator | None = None
        if ctx.taken_over:
            if self._published_by(job) is not None:
                return "success"
            # blobs the dead process committed under the job's name but never recorded
            self._repository.discard_unrecorded(job.uuid, url.file_name)
            resume, known = self._resume_point(job, url)
            log.info("download job %s taken over: %s %s", job.uuid,
                     f"continuing from byte {resume.length} of" if resume else "starting again",
                     url.url)
        restarts = 0
        while True:
            try:
                if self._elsewhere is not None:
                    intake = self._elsewhere.run(ctx, _task(ctx.job, resume, known))
                    record = self._ingest.publish(ctx, intake)
                else:
                    feed = functools.partial(self._fetch, url, credentials, known)
                    record = self._ingest.receive(ctx, url.file_name, feed, resume=resume)
                break
            except IntakeLost:
                restarts += 1
                if restarts > INTAKE_RESTARTS or ctx.cancelled:
                    self._discard_staged(ctx.job)
                    raise
                # the intake's process died under a live job: a new one continues from
                # what the checkpoint says it had staged, as a take-over would
                resume, known = self._resume_point(ctx.job, url)
                log.warning("the intake of download job %s died; a new one %s", job.uuid,
                            f"continues from byte {resume.length}" if resume
                            else "starts again")
            except (LeaseLost, Unavailable):
                # another process runs it now, or will once the database is back: from
                # these very staged bytes, which must stay
                raise
            except BaseException:
                self._discard_staged(ctx.job)  # what a dead intake left is of no use now
                raise
        log.info("downloaded %s (%s %s, %d bytes, sha256 %s)", url.url, record.kind,
                 record.version, record.size, record.sha256)
        return "success"

    def intake(self, task: dict[str, Any], control: Control, events: IntakeEvents) -> Intake:
        """A download's intake from its task (``_task``), in a worker process.

        The transfer's process is forked first, while the worker still has only its
        main thread; then the intake starts its threads and feeds it."""
        url, credentials = self._source(task["uuid"], task["params"], task.get("target"))
        known = Validator.from_json(task.get("known"))
        point = task.get("resume")
        resume = (ResumePoint(tuple(point["handles"]), int(point["length"]))
                  if isinstance(point, dict) else None)
        if isinstance(self._engine, ForkingEngine):
            prepared = self._engine.prepare(url, credentials, known=known,
                                            max_bytes=self._ingest.max_package_bytes)
            try:
                return self._ingest.take(url.file_name, prepared, control, events, resume)
            finally:
                prepared.close()
        feed = functools.partial(self._fetch, url, credentials, known)
        return self._ingest.take(url.file_name, feed, control, events, resume)

    def _fetch(self, url: DownloadUrl, credentials: Credentials, known: Validator | None,
               sink: PackageSink, control: Control) -> None:
        assert not isinstance(self._engine, ForkingEngine)  # intake() prepared that one
        self._engine.fetch(url, credentials, sink, control, known=known)

    def _source(self, uuid: str, params: dict[str, Any], target: str | None
                ) -> tuple[DownloadUrl, Credentials]:
        """The URL and the credentials, from the job's row."""
        raw = params.get("url") or target
        if not isinstance(raw, str):
            raise OntapError(DOWNLOAD_FAILED, RESTARTED)
        url, _ = parse_download_url(raw)
        sealed = params.get("secret")
        try:
            password = self._sealer.open(sealed, uuid) if isinstance(sealed, str) else None
        except SealBroken:
            raise OntapError(DOWNLOAD_FAILED, "Package download failed: the stored password "
                             "of this job cannot be read with this node's job key. Start "
                             "the download again.") from None
        username = params.get("username")
        return url, Credentials(username if isinstance(username, str) else None, password)

    def _resume_point(self, job: Job, url: DownloadUrl
                      ) -> tuple[ResumePoint | None, Validator | None]:
        """What of the dead process's transfer can be continued, by the same rules as a
        retry: the latest staged uploads, cut to a whole number of blocks that every
        copy holds, and the validator of the response they came from (HTTP needs one it
        can send as ``If-Range``; FTP compares SIZE and MDTM; FILE starts over). Every
        other staged upload is removed."""
        sets = [list(h) for h in job.checkpoint.get("staged", []) if isinstance(h, list)]
        known = Validator.from_json(job.checkpoint.get("validator"))
        latest = sets.pop() if sets else None
        self._repository.discard_staged(sets)
        if latest is None:
            return None, None
        length = self._repository.staged_length(latest) // BLOCK_SIZE * BLOCK_SIZE
        provable = known is not None and (url.scheme == "ftp" or known.if_range() is not None)
        if length == 0 or url.scheme == "file" or not provable:
            self._repository.discard_staged([latest])
            return None, None
        return ResumePoint(tuple(latest), length), known

    def _discard_staged(self, job: Job) -> None:
        """The uploads the dead process had staged (their handles are in the checkpoint)."""
        self._repository.discard_staged(job.checkpoint.get("staged", []))

    def _published_by(self, job: Job) -> PackageRecord | None:
        if job.target is None:
            return None
        try:
            url, _ = parse_download_url(job.target)
        except OntapError:
            return None
        record = self._repository.catalog.by_file_name(url.file_name)
        return record if record is not None and record.create_time >= job.created_at else None

    def status(self) -> DownloadStatus:
        """The latest download, as ``GET /api/cluster/software/download`` reports it."""
        job = self._jobs.latest(JobKind.DOWNLOAD)
        if job is None:
            return DownloadStatus("not_started", "Package download has not started.",
                                  DOWNLOAD_NOT_STARTED)
        p = job.progress
        if job.state is JobState.SUCCESS:
            state, message, code = "success", COMPLETED, 0
        elif job.state is JobState.FAILURE:
            state, message, code = "failure", job.message, job.code
        else:
            state, message, code = "running", IN_PROGRESS, DOWNLOAD_RUNNING
        return DownloadStatus(state, message, code, bytes_done=p.bytes_done,
                              bytes_total=p.bytes_total, speed=p.speed, job_uuid=job.uuid)


def _task(job: Job, resume: ResumePoint | None, known: Validator | None) -> dict[str, Any]:
    """What a worker needs to run the job's intake (:meth:`DownloadService.intake`): the
    row's parameters (the password sealed, as stored) and where to continue from."""
    return {"kind": "download", "uuid": job.uuid, "params": job.params, "target": job.target,
            "known": known.to_json() if known is not None else None,
            "resume": ({"handles": list(resume.handles), "length": resume.length}
                       if resume is not None else None)}


def update_running() -> OntapError:
    """No package may arrive while the cluster is being updated (ONTAP's 10551357)."""
    return Conflict(UPDATE_IN_PROGRESS, "Cannot perform an update when a previous update is "
                    "still in progress.")


def already_running() -> OntapError:
    """The text Ansible's na_ontap_software_update matches on."""
    return Conflict(DOWNLOAD_RUNNING, ALREADY_RUNNING)
