"""Taking one package into the repository, whichever way its bytes arrive.

A download (the bytes come from a URL) and an upload (they come in the request body)
differ only in their source. Everything after that is this one path: stage on every
node store, hash and inspect in the same pass, then publish — or throw it all away.

The first part, the intake (stage, transfer, hash, inspect, flush), runs on the job's
thread, or for a download in a worker process (``software/ingest_process.py``), so
that none of its threads share the service's GIL with the API. Publishing, the catalog
record that makes the package visible, always happens in the job's process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from swdepot import testpoints
from swdepot.errors import Unavailable
from swdepot.jobs.runner import JobContext
from swdepot.packages.inspect import PackageInspector
from swdepot.packages.model import PackageInfo, ValidationPolicy
from swdepot.repository.catalog import PackageRecord
from swdepot.repository.repository import Repository, Staged
from swdepot.transfer.control import Control, Validator
from swdepot.transfer.process import TransferLost
from swdepot.transfer.sink import CopiesDiffer, PackageSink

log = logging.getLogger(__name__)

PROCESSING = "Package processing in progress"
DOWNLOADING = "Package download in progress"  # ONTAP's text while a download runs

Feed = Callable[[PackageSink, Control], None]


@dataclass(frozen=True)
class ResumePoint:
    """Bytes a process that died had staged and a taker-over continues from: the
    uploads' handles (one per store) and how many bytes every one of them holds."""

    handles: tuple[str, ...]
    length: int


@dataclass(frozen=True)
class Intake:
    """A package's bytes staged and flushed on every store, hashed and validated."""

    staged: Staged
    info: PackageInfo
    sha256: str
    size: int


class IntakeEvents(Protocol):
    """What an intake tells whoever waits for it, besides its progress."""

    def opened(self, staged: Staged) -> None:
        """Uploads were opened (again after a rewind): where bytes are being staged."""

    def transferred(self, size: int) -> None:
        """Every byte has arrived; flushing and the last checks follow."""


class ContextControl:
    """Adapts a job context to what the transfer layer asks of its caller."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._done = 0
        self._total: int | None = None

    @property
    def cancelled(self) -> bool:
        return self._ctx.cancelled

    def progress(self, done: int, total: int | None) -> None:
        self._done, self._total = done, total
        self._ctx.report(bytes_done=done, bytes_total=total)

    def source_identified(self, validator: Validator) -> None:
        record_validator(self._ctx, validator)

    def retrying(self, note: str | None) -> None:
        """The job's message says it while a retry is waited for, at once (a refused
        connection is otherwise seconds of silence for whoever follows the job)."""
        self._ctx.report(DOWNLOADING if note is None else f"{DOWNLOADING}; {note}",
                         bytes_done=self._done, bytes_total=self._total, force=True)


class _OnThisThread:
    """The events of an intake on the job's own thread: straight into the job."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    def opened(self, staged: Staged) -> None:
        record_staged(self._ctx, [u.handle for u in staged.uploads])

    def transferred(self, size: int) -> None:
        self._ctx.report(PROCESSING, bytes_done=size, bytes_total=size, force=True)


def record_staged(ctx: JobContext, handles: list[str]) -> None:
    """Checkpoint where the job stages its bytes, so whoever takes it over finds them.

    New uploads hold bytes of a response still to come: the validator of an earlier
    one does not vouch for them, so it is cleared until the next one is recorded.
    """
    ctx.checkpoint(staged=[*ctx.job.checkpoint.get("staged", []), handles], validator=None)


def record_validator(ctx: JobContext, validator: Validator) -> None:
    """Checkpoint what identifies the file the staged bytes come from."""
    ctx.checkpoint(validator=validator.to_json())


class IntakeRunner(Protocol):
    """Runs an intake elsewhere (a worker process) on behalf of the job ``ctx``: ``task``
    says what to take, as data (``DownloadService.intake`` or ``UploadService.intake``
    reads it there); ``body``, the bytes to send there, if this process receives them."""

    def run(self, ctx: JobContext, task: dict[str, Any],
            body: Iterable[bytes] | None = None) -> Intake: ...


class PackageIngest:
    """Streams a package into staging, validates it and publishes it."""

    def __init__(self, repository: Repository, policy: Callable[[], ValidationPolicy],
                 max_package_bytes: int) -> None:
        self._repository = repository
        self._policy = policy
        self._max_bytes = max_package_bytes

    @property
    def max_package_bytes(self) -> int:
        return self._max_bytes

    def receive(self, ctx: JobContext, file_name: str, feed: Feed, *,
                resume: ResumePoint | None = None) -> PackageRecord:
        """Run ``feed`` on the job's thread to write the bytes, then publish; nothing
        stays behind on failure."""
        return self.publish(ctx, self.take(file_name, feed, ContextControl(ctx),
                                           _OnThisThread(ctx), resume))

    def take(self, file_name: str, feed: Feed, control: Control, events: IntakeEvents,
             resume: ResumePoint | None = None) -> Intake:
        """The intake, wherever it runs: stage, transfer, hash and inspect; flushed when
        it returns, gone if it raises.

        With ``resume`` the staged bytes are kept and ``feed`` continues after them (or,
        if the copies turn out to differ, the intake starts from zero). The trusted keys
        are read per package, so operators can add keys without a restart.
        """
        return self._take(file_name, self._policy(), feed, control, events, resume)

    def publish(self, ctx: JobContext, intake: Intake) -> PackageRecord:
        """Record the package taken in (the catalog makes it visible), or throw it away."""
        try:
            record = self._repository.publish(intake.staged, intake.info, intake.sha256,
                                              intake.size, record_id=ctx.job.uuid)
        except Unavailable:
            raise  # the staged or committed bytes stay for whoever takes the job over
        except BaseException:
            intake.staged.abort()
            raise
        testpoints.reached("download.published")
        return record

    def _take(self, file_name: str, policy: ValidationPolicy, feed: Feed, control: Control,
              events: IntakeEvents, resume: ResumePoint | None) -> Intake:
        """Stage, transfer, hash and inspect; flushed when it returns, gone if it raises."""

        def open_uploads() -> Staged:
            staged = self._repository.stage()
            events.opened(staged)
            return staged

        def new_sink(continued: Staged | None = None) -> PackageSink:
            return PackageSink(lambda: open_uploads().uploads,
                               lambda: PackageInspector(file_name, policy), self._max_bytes,
                               resume=continued.uploads if continued else None)

        sink = None
        if resume is not None:
            try:
                continued = self._repository.resume_staged(resume.handles, resume.length)
            except (OSError, ValueError) as exc:
                log.warning("cannot continue the staged copies (%s); starting again", exc)
            else:
                try:
                    sink = new_sink(continued)
                    log.info("continuing %s from byte %d", file_name, sink.bytes_written)
                except (CopiesDiffer, OSError) as exc:
                    log.warning("cannot continue the staged copies (%s); starting again", exc)
                    continued.abort()
        if sink is None:
            sink = new_sink()
        try:
            feed(sink, control)
            events.transferred(sink.bytes_written)
            testpoints.reached("download.transferred")
            sink.finish()
            info = sink.inspector.finish()
        except TransferLost:
            sink.suspend()  # what is staged stays, for a new intake to continue from
            raise
        except BaseException:
            sink.abort()
            raise
        return Intake(Staged(list(sink.uploads)), info, sink.sha256, sink.bytes_written)
