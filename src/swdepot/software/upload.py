"""``POST /api/cluster/software/upload``: a package sent in the request body.

The HTTP layer parses the multipart body as it arrives and hands the file's bytes to
an :class:`UploadIntake` (a bounded channel, so memory stays constant however large the
file). The upload job on the other side takes them through the same
:class:`~swdepot.software.ingest.PackageIngest` path as a download: staged on every node
store, hashed, inspected, published. With worker processes (the default) the job sends
the bytes on to a worker, which stages, hashes and inspects them
(``software/ingest_process.py``), so none of that shares the API's GIL; the job only
publishes.

[decision] Uploads do not share the one-download-at-a-time slot: ONTAP documents no
"operation already in progress" code for uploads, and the catalog's unique constraints
already settle two packages racing for the same name or version.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from swdepot.errors import (
    UPLOAD_INTERNAL,
    UPLOAD_NAME_TOO_LONG,
    UPLOAD_NO_SPACE,
    UPLOAD_READ_WRITE,
    UPLOAD_TIME_LIMIT,
    InvalidInput,
    OntapError,
)
from swdepot.jobs.model import Job, JobKind
from swdepot.jobs.runner import JobContext, JobRunner
from swdepot.packages.naming import MAX_NAME_BYTES
from swdepot.packages.streams import ChunkChannel, StreamAborted
from swdepot.repository.repository import Repository
from swdepot.software.download import update_running
from swdepot.software.ingest import Intake, IntakeEvents, IntakeRunner, PackageIngest
from swdepot.software.ingest_process import IntakeLost
from swdepot.transfer.control import Control
from swdepot.transfer.sink import PackageSink

log = logging.getLogger(__name__)

DESCRIPTION = "POST /api/cluster/software/upload"
IN_PROGRESS = "Package upload in progress"
READ_CHUNK = 1 << 20


def no_space() -> OntapError:
    return OntapError(UPLOAD_NO_SPACE, "There is not enough space to store the uploaded "
                      "package.")


def interrupted(reason: str) -> OntapError:
    return OntapError(UPLOAD_READ_WRITE, f"Package upload failed: {reason}.")


def client_file_name(name: str) -> str:
    """The base name of what the client sent: netapp-ontap sends the full local path."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass
class UploadIntake:
    """The request side of a running upload job.

    ``put`` blocks while the job is behind (the channel holds a few chunks); once the job
    has ended — failed early, or cancelled — ``done`` is set and the caller only has to
    read the rest of the body and throw it away.
    """

    job: Job
    channel: ChunkChannel = field(default_factory=ChunkChannel)
    done: threading.Event = field(default_factory=threading.Event)
    failure: OntapError | None = None

    def put(self, chunk: bytes) -> None:
        self.channel.put(chunk, self.done)

    def finish(self) -> None:
        """End of the file: the job goes on to validate and publish."""
        self.channel.close(self.done)

    def abort(self, error: OntapError) -> None:
        """The request failed (client gone, a second file): the job fails with ``error``."""
        self.failure = error
        self.channel.cancel()


class UploadService:
    """Checks an upload request and runs its job."""

    def __init__(self, *, runner: JobRunner, repository: Repository, ingest: PackageIngest,
                 node: str, min_free_bytes: int, max_duration: float,
                 update_in_progress: Callable[[], bool] = lambda: False,
                 elsewhere: IntakeRunner | None = None) -> None:
        """``elsewhere``: where the intake (copies, sha256, inspection) runs, if not on
        the job's thread: a worker process, which runs :meth:`intake`."""
        self._elsewhere = elsewhere
        self._runner = runner
        self._repository = repository
        self._ingest = ingest
        self._node = node
        self._min_free = min_free_bytes
        self._max_duration = max_duration
        self._update_in_progress = update_in_progress
        runner.register(JobKind.UPLOAD, self._taken_over, internal_code=UPLOAD_INTERNAL)

    def check_request(self, content_length: int | None) -> None:
        """What can be refused before any byte is read: an update running, no room."""
        if self._update_in_progress():
            raise update_running()
        free = self._repository.free_bytes()
        if free is not None and (free - (content_length or 0)) < self._min_free:
            raise no_space()

    def start(self, sent_name: str) -> UploadIntake:
        """Check the file name and start the job that will receive the bytes."""
        name = client_file_name(sent_name)
        if len(name.encode()) > MAX_NAME_BYTES:
            raise InvalidInput(UPLOAD_NAME_TOO_LONG, "The file name exceeds the maximum path "
                               f"length ({MAX_NAME_BYTES} bytes).", target="file")
        if not name:
            raise InvalidInput(UPLOAD_READ_WRITE, "The uploaded file has no name.",
                               target="file")
        self._repository.check_name_free(name, target="file")
        job = Job.new(JobKind.UPLOAD, DESCRIPTION, node=self._node, target=name)
        intake = UploadIntake(job.with_changes(message=IN_PROGRESS))
        self._runner.start(intake.job, lambda ctx: self._run(ctx, name, intake),
                           internal_code=UPLOAD_INTERNAL)
        return intake

    def _run(self, ctx: JobContext, name: str, intake: UploadIntake) -> str:
        """The job body: drain the channel into the ingest path, within ONTAP's 1 hour."""
        expired = threading.Event()

        def time_out() -> None:
            expired.set()
            intake.channel.cancel()

        timer = threading.Timer(self._max_duration, time_out)
        timer.daemon = True
        timer.start()
        ctx.on_cancel(lambda: intake.abort(interrupted("the upload was canceled")))
        try:
            if self._elsewhere is not None:
                task = {"kind": "upload", "uuid": ctx.job.uuid, "file_name": name}
                taken = self._elsewhere.run(ctx, task, body=_chunks(intake))
                record = self._ingest.publish(ctx, taken)
            else:
                record = self._ingest.receive(
                    ctx, name, lambda sink, _control: self._drain(ctx, intake, sink))
        except IntakeLost:
            self._repository.discard_staged(ctx.job.checkpoint.get("staged", []))
            raise interrupted("the worker process receiving it ended") from None
        except StreamAborted:
            if expired.is_set():
                raise OntapError(UPLOAD_TIME_LIMIT, "Package upload failed: the upload took "
                                 "longer than the maximum time limit of 1 hour.") from None
            raise intake.failure or interrupted("the upload was interrupted") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise no_space() from exc
            raise
        finally:
            timer.cancel()
            intake.done.set()
            intake.channel.discard()
        log.info("uploaded %s (%s %s, %d bytes, sha256 %s)", name, record.kind, record.version,
                 record.size, record.sha256)
        return "success"

    def _taken_over(self, ctx: JobContext) -> str:
        """An upload whose process died: its bytes came from that process's client, which
        is gone with it. Published already, it succeeded; else it fails and nothing of it
        stays (blobs committed under its name, staged copies)."""
        job = ctx.job
        if self._repository.catalog.by_id(job.uuid) is not None:
            return "success"
        if job.target is not None:
            self._repository.discard_unrecorded(job.uuid, job.target)
        self._repository.discard_staged(job.checkpoint.get("staged", []))
        raise interrupted("the upload was interrupted because the service process receiving "
                          "it ended; send the file again")

    def _drain(self, ctx: JobContext, intake: UploadIntake, sink: PackageSink) -> None:
        while chunk := intake.channel.read(READ_CHUNK):
            sink.write(chunk)
            ctx.report(bytes_done=sink.bytes_written)

    def intake(self, task: dict[str, Any], control: Control, events: IntakeEvents,
               body: Callable[[], bytes | None]) -> Intake:
        """An upload's intake in a worker process: ``body`` gives the bytes the service
        receives, until None."""

        def feed(sink: PackageSink, _control: Control) -> None:
            while (chunk := body()) is not None:
                sink.write(chunk)
                control.progress(sink.bytes_written, None)

        try:
            return self._ingest.take(str(task["file_name"]), feed, control, events)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise no_space() from exc
            raise


def _chunks(intake: UploadIntake) -> Iterator[bytes]:
    """The file's bytes as the request delivers them (raises ``StreamAborted`` if stopped)."""
    while chunk := intake.channel.read(READ_CHUNK):
        yield chunk
