"""Structured logs: one JSON object per line, each tagged with the request that caused it.

The request id lives in a context variable: the HTTP layer sets it per request, the
thread pool that runs blocking calls inherits it, and the job runner copies it into
the job's thread, so a download's log lines name the request that started it.
What is logged is chosen so that it never holds a secret: download passwords are
stored only sealed (``sealing.py``) and never logged, URLs are logged in their redacted
form, and
request bodies and the ``Authorization`` header are never logged.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import sys

from pythonjsonlogger.orjson import OrjsonFormatter

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("swdepot_request_id",
                                                                        default=None)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def request_id_from(header: str | None) -> str:
    """Keep a caller's ``X-Request-Id`` if it is short and plain; otherwise make one."""
    if header and _CLIENT_ID.fullmatch(header):
        return header
    return secrets.token_hex(16)  # as unique as a uuid4, without building a UUID


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``None`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        record.__dict__.pop("color_message", None)  # uvicorn's copy with terminal colours
        return True


QUIET_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3")
#: warnings that repeat, in several lines each, what swdepot logs once in a line (the
#: pool's every failed reconnect, while the database is away)
QUIETER_LIBRARIES = ("psycopg.pool",)


def configure(level: str = "info", fmt: str = "json") -> None:
    """Route every logger (uvicorn's included) to stderr as JSON lines or text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        # orjson: the access log writes a line per request (why: docs/performance.md)
        handler.setFormatter(OrjsonFormatter(
            "%(levelname)s %(name)s %(message)s %(request_id)s", timestamp="time",
            rename_fields={"levelname": "level", "name": "logger"},
        ))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # the S3 client narrates each request and credential lookup at INFO; its warnings
    # and errors still come through, and --log-level debug shows everything
    debug = level.lower() == "debug"
    for chatty in QUIET_LIBRARIES:
        logging.getLogger(chatty).setLevel(logging.NOTSET if debug else logging.WARNING)
    for chatty in QUIETER_LIBRARIES:
        logging.getLogger(chatty).setLevel(logging.NOTSET if debug else logging.ERROR)
