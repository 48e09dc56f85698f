"""``/api/cluster/software/upload``: a package sent as ``multipart/form-data``.

The body is parsed while it arrives and the file's bytes go to the upload job in 1 MiB
pieces through a bounded channel, so memory use does not depend on the file's size.
Errors found on the way (a second file, a form field) still read the rest of the body,
so that the client, which sends the whole body before it reads, gets the error answer.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api.http import principal, query_pairs
from swdepot.api.multipart import MultipartStream, PartStart
from swdepot.api.routes.common import action_timeout, answer_job, service_of
from swdepot.errors import (
    MISSING_REQUIRED,
    UNEXPECTED_ARGUMENT,
    UPLOAD_SINGLE_FILE,
    InvalidInput,
    OntapError,
)
from swdepot.software.upload import UploadIntake, interrupted

HANDOVER_BYTES = 1 << 20


class _Receiver:
    """Routes the parsed parts of one request to one upload job."""

    def __init__(self, request: Request) -> None:
        self.uploads = service_of(request).uploads
        self.intake: UploadIntake | None = None
        self.buffer = bytearray()

    async def take(self, event: PartStart | bytes) -> None:
        if isinstance(event, PartStart):
            await self._part(event)
        elif self.intake is not None:
            self.buffer += event
            if len(self.buffer) >= HANDOVER_BYTES:
                await self.flush()

    async def _part(self, part: PartStart) -> None:
        """Only a part named ``file`` is taken (ONTAP's form field), before any job starts:
        a file sent under another name is refused, not stored."""
        if part.name != "file":
            raise InvalidInput(UNEXPECTED_ARGUMENT, f'Unexpected argument "{part.name}": send '
                               'the package in the form field "file".', target=part.name)
        if self.intake is not None:
            raise InvalidInput(UPLOAD_SINGLE_FILE, "Only a single file can be uploaded per "
                               "request.", target="file")
        self.intake = await run_in_threadpool(self.uploads.start, part.filename or "")

    async def flush(self) -> None:
        """Hand the buffered bytes over (blocking in a worker thread while the job is behind)."""
        if self.intake is not None and self.buffer and not self.intake.done.is_set():
            await run_in_threadpool(self.intake.put, bytes(self.buffer))
        self.buffer.clear()


async def post_upload(request: Request) -> Response:
    principal(request).require_write()
    timeout = action_timeout(query_pairs(request))
    stream = MultipartStream(request.headers.get("content-type", ""))
    length = request.headers.get("content-length")
    await run_in_threadpool(service_of(request).uploads.check_request,
                            int(length) if length and length.isdigit() else None)
    receiver = _Receiver(request)
    error: OntapError | None = None
    try:
        async for chunk in request.stream():
            if error is not None:
                continue  # read and drop the rest, so the client gets to read our answer
            try:
                for event in stream.feed(chunk):
                    await receiver.take(event)
            except OntapError as exc:
                error = exc
        if error is None:
            stream.finish()
    except ClientDisconnect:
        if receiver.intake is not None:
            receiver.intake.abort(interrupted("the client disconnected"))
        return Response(status_code=400)  # nobody is listening any more
    except OntapError as exc:
        error = exc
    intake = receiver.intake
    if error is not None:
        if intake is not None:
            intake.abort(error)
        raise error
    if intake is None:
        raise InvalidInput(MISSING_REQUIRED, 'Missing value for required field "file".',
                           target="file")
    await receiver.flush()
    await run_in_threadpool(intake.finish)
    return await answer_job(request, intake.job, timeout, done_status=201)


ROUTES = [
    Route("/api/cluster/software/upload", post_upload, methods=["POST"]),
]
