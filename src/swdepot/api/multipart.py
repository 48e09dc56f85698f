"""A ``multipart/form-data`` body parsed as it arrives, with no buffering of parts.

Starlette's ``request.form()`` spools each file to a temporary file before the endpoint
sees it, which would write an upload twice. This wraps python-multipart's push parser
instead: feed it each received chunk and get back what the chunk contained — the start
of a part (with its disposition) or a piece of the part's data.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from swdepot.errors import UPLOAD_NOT_MULTIPART, UPLOAD_READ_WRITE, InvalidInput


@dataclass(frozen=True)
class PartStart:
    """A part's headers have been read."""

    name: str
    filename: str | None

    @property
    def is_file(self) -> bool:
        return self.filename is not None


Event = PartStart | bytes


def not_multipart() -> InvalidInput:
    return InvalidInput(UPLOAD_NOT_MULTIPART, "The request must be of type "
                        "\"multipart/form-data\".")


def malformed(detail: str) -> InvalidInput:
    return InvalidInput(UPLOAD_READ_WRITE, f"Package upload failed: {detail}.")


class MultipartStream:
    """Incremental parser for one request body."""

    def __init__(self, content_type: str) -> None:
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise not_multipart()
        self._events: list[Event] = []
        self._field = b""
        self._headers: dict[bytes, bytes] = {}
        self._value = b""
        self.complete = False
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        })

    def feed(self, chunk: bytes) -> list[Event]:
        """What ``chunk`` completed, in order; data pieces are fresh ``bytes``."""
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise malformed(f"the multipart body is malformed ({exc})") from None
        events, self._events = self._events, []
        return events

    def finish(self) -> None:
        """The body ended: it must have ended with the closing boundary."""
        if not self.complete:
            raise malformed("the request body ended before the closing multipart boundary")

    # --- python-multipart callbacks ---------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        filename = params.get(b"filename")
        self._events.append(PartStart(
            name=params.get(b"name", b"").decode("utf-8", "replace"),
            filename=None if filename is None else filename.decode("utf-8", "replace"),
        ))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(data[start:end])

    def _end(self) -> None:
        self.complete = True
