"""ONTAP's HTTP conventions on top of Starlette: bodies, errors, HAL and auth.

Kept apart from the routes so that each route module reads as "parse, call the
domain, answer".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from swdepot.api.query import strip_links
from swdepot.auth import Authenticator, Principal
from swdepot.errors import (
    ARRAY_NOT_EXPECTED,
    BODY_NOT_ALLOWED,
    FIELD_CANNOT_BE_SET,
    INVALID_JSON,
    INVALID_VALUE,
    MISSING_REQUIRED,
    SECRET_IN_URL,
    UNEXPECTED_ARGUMENT,
    Conflict,
    Forbidden,
    InternalError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    OntapError,
    Throttled,
    Unauthorized,
    Unavailable,
    invalid_field_value,
)

log = logging.getLogger(__name__)

HAL = "application/hal+json"
JSON = "application/json"
MAX_JSON_BODY = 1 << 20
SECRET_FIELDS = ("password",)
SECURITY_HEADERS = {
    "cache-control": "no-cache,no-store,must-revalidate",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
}


def plain_json(accept: str) -> bool:
    """``Accept: application/json`` asks ONTAP to leave out HAL links (except next)."""
    return JSON in accept and HAL not in accept


def wants_plain_json(request: Request) -> bool:
    return plain_json(request.headers.get("accept", ""))


def encode(body: dict[str, Any], plain: bool) -> bytes:
    """The bytes of an answer: HAL as built, or plain JSON without the links."""
    return orjson.dumps(strip_links(body) if plain else body)


def respond(request: Request, body: dict[str, Any], status: int = 200,
            headers: dict[str, str] | None = None) -> Response:
    """Serialise ``body`` the way ONTAP does, honouring the client's Accept header."""
    plain = wants_plain_json(request)
    return Response(encode(body, plain), status_code=status,
                    media_type=JSON if plain else HAL,
                    headers={**SECURITY_HEADERS, **(headers or {})})


class RequestRefused(OntapError):
    """The HTTP request itself is refused, with a status of the HTTP layer's own (a head
    too large or too slow; a status Starlette chose)."""

    def __init__(self, code: int, message: str, *, status: int) -> None:
        super().__init__(code, message)
        self.status = status


#: The HTTP status of each cause (errors.py); any other ONTAP error is ONTAP's 400.
HTTP_STATUS: tuple[tuple[type[OntapError], int], ...] = (
    (InvalidInput, 400), (NotFound, 404), (Conflict, 400), (Unauthorized, 401),
    (Forbidden, 403), (MethodNotAllowed, 405), (Throttled, 429), (InternalError, 500),
    (Unavailable, 503),
)


def http_status(exc: OntapError) -> int:
    """The status ONTAP answers ``exc`` with."""
    if isinstance(exc, RequestRefused):
        return exc.status
    return next((status for cause, status in HTTP_STATUS if isinstance(exc, cause)), 400)


def wants_page(request: Request) -> bool:
    """A browser navigating to a page (not the API): its refusal is read by a person."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", "")


def login_page(request: Request, exc: OntapError) -> Response:
    """A refused login as the browser shows it when the user cancels its dialog: a
    sentence in HTML, with the status and headers of the API's refusal."""
    api = error_response(request, exc)
    if isinstance(exc, Throttled):
        text = (f"Too many failed logins from this address. Wait {exc.retry_after} seconds, "
                "then reload the page to log in again.")
    else:
        text = ("The user name or password is wrong, or no login was given. Reload the page "
                "to log in again (swdepot's users are managed with \u201cswdepot user\u201d).")
    body = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>swdepot: '
            f'login required</title></head><body><h1>swdepot</h1><p>{text}</p></body></html>')
    headers = {k: v for k, v in api.headers.items()
               if k not in ("content-type", "content-length")}
    return Response(body, status_code=http_status(exc), media_type="text/html", headers=headers)


def error_response(request: Request, exc: OntapError) -> Response:
    headers = {"www-authenticate": 'Basic realm="swdepot"'} if isinstance(exc, Unauthorized) else {}
    if isinstance(exc, Throttled):
        headers["retry-after"] = str(exc.retry_after)
    elif isinstance(exc, Unavailable):
        headers["retry-after"] = "1"
    return Response(orjson.dumps(exc.to_body()), status_code=http_status(exc), media_type=HAL
                    if not wants_plain_json(request) else JSON,
                    headers={**SECURITY_HEADERS, **headers})


def query_pairs(request: Request) -> list[tuple[str, str]]:
    """Decoded query pairs in order; invalid UTF-8 is a client error, not a crash.

    Read from the raw query string: ``request.url`` would rebuild the whole URL first.
    """
    raw: bytes = request.scope.get("query_string", b"")
    if not raw:
        return []
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput(INVALID_VALUE, "The query string is not valid UTF-8.") from None
    for name, _ in pairs:
        if name in SECRET_FIELDS:
            raise InvalidInput(SECRET_IN_URL, f'Field "{name}" is secret and must not be given '
                               "in the URL.", target=name)
    return pairs


async def read_json_object(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (``application/json`` or ``hal+json``)."""
    raw = await _read_limited(request)
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidInput(MISSING_REQUIRED, "A request body is required for this operation.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(INVALID_JSON, f"Invalid JSON input: {exc}.") from None
    if isinstance(body, list):
        raise InvalidInput(ARRAY_NOT_EXPECTED, "Invalid JSON input: an array was found where "
                           "an object was expected.")
    if not isinstance(body, dict):
        raise InvalidInput(INVALID_JSON, "Invalid JSON input: the body must be a JSON object.")
    return body


async def refuse_body(request: Request) -> None:
    """GET and DELETE take no body; ``{}`` is tolerated (netapp-ontap sends it on DELETE)."""
    raw = await _read_limited(request)
    if raw.strip() and raw.strip() != b"{}":
        raise InvalidInput(BODY_NOT_ALLOWED, "A request body is not allowed on GET, HEAD, and "
                           "DELETE.")


async def _read_limited(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise InvalidInput(INVALID_JSON, f"The request body is larger than {MAX_JSON_BODY} "
                               "bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def check_fields(body: dict[str, Any], *, writable: Sequence[str],
                 read_only: Sequence[str] = ()) -> None:
    """Unknown body fields are 262179, read-only ones 262196, as ONTAP answers."""
    for name in body:
        if name in read_only:
            raise InvalidInput(FIELD_CANNOT_BE_SET,
                               f'Field "{name}" cannot be set in this operation.', target=name)
        if name not in writable:
            raise InvalidInput(UNEXPECTED_ARGUMENT, f'Unexpected argument "{name}".',
                               target=name)


def optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_field_value(name, _shown(name, value), "<string>")
    return value


def required_string(body: dict[str, Any], name: str) -> str:
    value = optional_string(body, name)
    if value is None:
        raise InvalidInput(MISSING_REQUIRED, f'Missing value for required field "{name}".',
                           target=name)
    return value


def _shown(name: str, value: Any) -> str:
    return "***" if name in SECRET_FIELDS else str(value)[:200]


class CollapseSlashes:
    """Treat ``/api//cluster/x`` as ``/api/cluster/x``, as ONTAP's web server does.

    Ansible's ``na_ontap_rest_info`` follows a ``next`` link by stripping ``/api`` from
    it and appending the rest to ``https://host/api/``, which doubles the slash.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            scope = {**scope, "path": re.sub("/{2,}", "/", scope["path"])}
        await self.app(scope, receive, send)


class AuthMiddleware:
    """Authenticates every HTTP request before routing (pre-emptive Basic auth).

    Not only ``/api``: ``/metrics`` and the web pages need a login too.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await _authenticate(self.authenticator, request)
        except OntapError as exc:
            refusal = (login_page(request, exc)
                       if wants_page(request) and isinstance(exc, Unauthorized | Throttled)
                       else error_response(request, exc))
            await refusal(scope, receive, send)
            return
        scope["principal"] = principal
        await self.app(scope, receive, send)


async def _authenticate(authenticator: Authenticator, request: Request) -> Principal:
    """Check credentials: cached ones on the loop (microseconds), others in a thread.

    A cache miss costs one slow hash, so only that goes to the thread pool; polling
    clients, whose credentials were verified on their first request, never leave the loop.
    """
    header = request.headers.get("authorization")
    client = request.client.host if request.client is not None else None
    known = authenticator.cached(header, client)
    if known is not None:
        return known
    return await run_in_threadpool(authenticator.authenticate, header, client)


def principal(request: Request) -> Principal:
    """Who sent the request (set by :class:`AuthMiddleware` before any route runs)."""
    who: Principal = request.scope["principal"]
    return who
