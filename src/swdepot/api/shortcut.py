"""The two reads that clients poll, answered without the framework's layers.

While a download runs, ONTAP clients poll the job (``GET /api/cluster/jobs/{uuid}``) and
the download status (``GET /api/cluster/software/download``), and monitoring polls them
far more often than any other resource. Through Starlette's middleware stack and router
such a poll cost about three times the work of the answer itself, and under load that
work competes with the download for the same two cores (docs/performance.md).

:class:`PollAnswerer` answers exactly those requests when nothing about them needs a
decision: GET, no query string, no body, a plain path and credentials the
authenticator has already verified (its cache). It builds the same record with the same
functions the routes use (``api/views/``), encodes it the same way, sends the same
headers and counts and logs the request as :class:`~swdepot.api.observe.ObserveMiddleware`
does. Anything else, every error included (an unknown job, a login to check, a
locked-out address), passes to the full application, so the shortcut never answers
differently from the routes; the tests compare the two answer for answer.

It is synchronous and knows no server, so two doors lead to it: the HTTP protocol
(api/protocol.py) asks it before uvicorn builds an ASGI request at all, and
:class:`PollShortcut` asks it in front of the app for requests that reach the app anyway
(any other ASGI server, a pipelined request).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from swdepot.api.http import HAL, JSON, SECURITY_HEADERS, encode, plain_json
from swdepot.api.observe import REQUEST_ID_HEADER, record
from swdepot.api.routes.jobs import visible_job
from swdepot.api.views.download import download_record
from swdepot.api.views.jobs import job_record
from swdepot.auth import Principal
from swdepot.errors import OntapError
from swdepot.logs import REQUEST_ID, request_id_from
from swdepot.service import Service

JOBS_PREFIX = "/api/cluster/jobs/"
JOB_ROUTE = "/api/cluster/jobs/{uuid}"
DOWNLOAD_ROUTE = "/api/cluster/software/download"
_SECURITY = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
_TYPES = {False: HAL.encode(), True: JSON.encode()}
_READ = frozenset((b"authorization", b"accept", REQUEST_ID_HEADER))

Record = Callable[[Service, str], dict[str, Any] | None]
Headers = list[tuple[bytes, bytes]]


def _job(service: Service, uuid: str) -> dict[str, Any] | None:
    job = visible_job(service, uuid)
    return job_record(job) if job is not None else None


def _download(service: Service, _key: str) -> dict[str, Any] | None:
    return download_record(service.downloads.status())


def _route(path: str) -> tuple[str, Record, str] | None:
    """The route template, record builder and path parameter of a polled path, as
    Starlette would match it."""
    if path == DOWNLOAD_ROUTE:
        return DOWNLOAD_ROUTE, _download, ""
    if path.startswith(JOBS_PREFIX):
        uuid = path[len(JOBS_PREFIX):]
        if uuid and "/" not in uuid:
            return JOB_ROUTE, _job, uuid
    return None


@dataclass(slots=True)
class PollAnswer:
    """A poll's 200 answer, ready to send, and what :meth:`PollAnswerer.done` records."""

    headers: Headers
    body: bytes
    route: str
    request_id: str
    principal: Principal
    started: float


class PollAnswerer:
    """Answers routine polls of ``service``, or says None so the full app answers."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def answer(self, method: str, path: str, query: bytes, headers: Iterable[tuple[bytes, bytes]],
               client: str | None) -> PollAnswer | None:
        """The answer to this request if it is a plain poll; None having done nothing."""
        if method != "GET" or query or (route := _route(path)) is None:
            return None
        started = time.perf_counter()
        seen: dict[bytes, str] = {}
        for name, value in headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return None  # a body on a GET is refused by the route, with its error
            if name in _READ and name not in seen:  # the first one counts, as in Starlette
                seen[name] = value.decode("latin-1")
        try:
            principal = self.service.authenticator.cached(seen.get(b"authorization"), client)
        except OntapError:
            return None  # locked out: the full app answers 429
        if principal is None:
            return None
        template, build, key = route
        try:
            body = build(self.service, key)
        except Exception:  # the routes' path answers and logs it (a 500 in ONTAP's words)
            return None
        if body is None:
            return None
        plain = plain_json(seen.get(b"accept", ""))
        content = encode(body, plain)
        rid = request_id_from(seen.get(REQUEST_ID_HEADER))
        return PollAnswer([*_SECURITY, (b"content-length", str(len(content)).encode()),
                           (b"content-type", _TYPES[plain]), (REQUEST_ID_HEADER, rid.encode())],
                          content, template, rid, principal, started)

    def done(self, answer: PollAnswer, scope: Scope) -> None:
        """Count and log the sent answer as ObserveMiddleware would (``scope``: method,
        path, principal)."""
        record(self.service.metrics, scope, answer.route, 200,
               time.perf_counter() - answer.started)


class PollShortcut:
    """Answers routine polls directly; passes every other request to ``app`` untouched."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.polls = PollAnswerer(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            answer = self.polls.answer(scope["method"], scope["path"], scope["query_string"],
                                       scope["headers"], client[0] if client else None)
            if answer is not None:
                REQUEST_ID.set(answer.request_id)  # the request's own task: no reset needed
                scope["principal"] = answer.principal
                await send({"type": "http.response.start", "status": 200,
                            "headers": answer.headers})
                await send({"type": "http.response.body", "body": answer.body})
                self.polls.done(answer, scope)
                return
        await self.app(scope, receive, send)
