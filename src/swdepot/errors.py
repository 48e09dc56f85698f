"""Errors that carry their ONTAP code, in a small hierarchy named by cause.

Every failure a client can see is an :class:`OntapError`: it knows its numeric ONTAP
code (every code is defined once, below), the message text (clients match on these
texts, so they are part of the contract) and optionally the input field to blame.
Its class says why it happened: bad input, an absent entry, a conflict with the current
state, missing credentials, a role that may not, an unsupported operation, throttling, a
part of the cluster that cannot be reached now, or a fault of swdepot's own. The HTTP
layer maps the cause to a status
(``api/http.py::http_status``) and the error to ``{"error": {"message", "code",
"target"}}``; the job engine stores one as a job's failure. Domain code raises these and
knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Any


class OntapError(Exception):
    """Base of every client-visible error; one without a cause of its own below is a
    failure of the operation asked for (a job's error answered synchronously)."""

    def __init__(self, code: int, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.target = target

    def to_body(self) -> dict[str, Any]:
        """The ONTAP error envelope; ``code`` is a string on the wire (ONTAP's schema)."""
        error: dict[str, Any] = {"message": self.message, "code": str(self.code)}
        if self.target:
            error["target"] = self.target
        return {"error": error}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


class InvalidInput(OntapError):
    """The request is malformed or a value is out of range."""


class NotFound(OntapError):
    """The addressed entry does not exist."""


class Conflict(OntapError):
    """The operation collides with the current state."""


class Unauthorized(OntapError):
    """Missing or wrong credentials."""


class Forbidden(OntapError):
    """Authenticated, but the role may not do this."""


class MethodNotAllowed(OntapError):
    """The resource exists but not with this method (code 3)."""


class InternalError(OntapError):
    """Something failed inside swdepot that the client cannot fix."""


class Unavailable(OntapError):
    """A part the cluster stands on (its database) cannot be reached now; nothing was
    changed, and the same request may succeed when sent again."""


class Throttled(OntapError):
    """Too many attempts from one client; it may come back after ``retry_after``."""

    def __init__(self, code: int, message: str, *, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


# --- ONTAP codes used across swdepot (names say what ONTAP's tables say) ---------------

API_NOT_FOUND = 3
ENTRY_NOT_FOUND = 4
INTERNAL_ERROR = 262145
CLUSTER_DATABASE_UNREACHABLE = 393271  # ONTAP's "A node is out of quorum" (docs/compatibility.md)
TOO_MANY_REQUESTS = 262160
NOT_AUTHORIZED = 6
UNEXPECTED_ARGUMENT = 262179
FIELD_CANNOT_BE_SET = 262196
INVALID_FIELD_VALUE = 262197
BODY_NOT_ALLOWED = 262198
INVALID_JSON = 262199
SECRET_IN_URL = 262202
MISSING_REQUIRED = 262212
INVALID_VALUE = 262185
ORDER_BY_UNSUPPORTED = 262268
NO_VALUES = 262190  # a PATCH without a value to change
FILTER_ON_POST = 262211  # a POST with a field in its query (the CLI passthrough)
WILDCARD_FIELDS = 262220  # fields=* on the CLI passthrough
ARRAY_NOT_EXPECTED = 262255
FIELDS_MISMATCHED_BRACES = 262286

PACKAGE_NAME_EXISTS = 10551327
DELETE_DURING_UPDATE = 10551347
UPDATE_COMPLETE = 10551399  # status_details[].issue.code of "Image update complete"
VERSION_MISSING = 10551872
ALREADY_AT_VERSION = 10551897
UPDATE_IN_PROGRESS = 10551357
PACKAGE_PROCESSING_FAILED = 10551359
DOWNLOAD_FAILED = 10551381
DOWNLOAD_RUNNING = 10551382
DOWNLOAD_TIME_LIMIT = 10551383
DOWNLOAD_NOT_STARTED = 10551384
DOWNLOAD_INTERNAL = 10551391
FIRMWARE_EXISTS = 10551496
REPOSITORY_PLACEMENT_FAILED = 10551859
REPOSITORY_EMPTY = 10551315
PACKAGE_NOT_IN_REPOSITORY = 10551325
UPLOAD_TIME_LIMIT = 10551373
UPLOAD_INTERNAL = 10551392
UPLOAD_NAME_TOO_LONG = 10551799
UPLOAD_READ_WRITE = 10551801
UPLOAD_NO_SPACE = 10551804
UPLOAD_SINGLE_FILE = 10551807
UPLOAD_NOT_MULTIPART = 10551808
URL_INVALID = 39387137
URL_SCHEME_UNSUPPORTED = 39387138

JOB_TERMINAL = 458762
JOB_NOT_RUNNING = 458776
JOB_PAUSE_UNSUPPORTED = 458783
JOB_CANCEL_UNSUPPORTED = 458784


def database_unreachable() -> Unavailable:
    """What a request meets while the cluster's database cannot be reached (a 503)."""
    return Unavailable(CLUSTER_DATABASE_UNREACHABLE, "The cluster database cannot be "
                       "reached. Retry the operation after a short delay.")


def api_not_found() -> NotFound:
    """No such path: ONTAP's 404 with code 3 (its private CLI paths answer the same)."""
    return NotFound(API_NOT_FOUND, "API not found")


def entry_not_found(target: str) -> NotFound:
    """ONTAP's generic 404 body: ``entry doesn't exist`` (the Ansible modules match this text)."""
    return NotFound(ENTRY_NOT_FOUND, "entry doesn't exist", target=target)


def invalid_field_value(field: str, value: object, allowed: str) -> InvalidInput:
    """ONTAP's 262197 text.

    Example: ``The value "600" is invalid for field "return_timeout" (<0..120>)``.
    """
    return InvalidInput(
        INVALID_FIELD_VALUE,
        f'The value "{value}" is invalid for field "{field}" ({allowed})',
        target=field,
    )
