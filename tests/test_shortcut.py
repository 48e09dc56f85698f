"""The poll shortcut answers exactly as the routes do, and only what it may answer.

Each request is sent to two ASGI apps over the same running service: the service's own
app (with :class:`PollShortcut`) and one built without it, where every request takes the
routes' path. Their answers must match byte for byte, but for the request id. A third
check wraps the shortcut around an app that records what reaches it, to prove which
requests the shortcut answers itself and which it passes on.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pkgfactory import make_package
from service import ADMIN_PASSWORD
from swdepot.api.app import create_app
from swdepot.api.shortcut import PollShortcut
from test_observability import scrape, value

DOWNLOAD = "/api/cluster/software/download"
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


ADMIN = basic("admin", ADMIN_PASSWORD)


def call(app: Any, path: str, *, method: str = "GET", query: bytes = b"",
         headers: tuple[tuple[bytes, bytes], ...] = (), body: bytes = b"",
         client: str = "127.0.0.1") -> Answer:
    """One request straight into an ASGI app: (status, headers, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "https", "path": path, "raw_path": path.encode(),
             "query_string": query, "root_path": "", "client": (client, 40000),
             "server": ("127.0.0.1", 443),
             "headers": [(b"host", b"127.0.0.1"), *headers]}
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # on a thread of its own: Playwright's sync API keeps an event loop running in the
    # main thread once the browser tests have run
    with ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(asyncio.run, app(scope, receive, send)).result()
        except Exception:
            # Starlette re-raises an unexpected error after answering it, for the server to
            # log; what the client got is what counts here
            if not sent:
                raise
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], list(start["headers"]), content


def without_request_id(answer: Answer) -> Answer:
    status, headers, body = answer
    return status, [(k, v) for k, v in headers if k != b"x-request-id"], body


@pytest.fixture
def apps(swdepot):
    """(the service's app, the same service without the shortcut)."""
    return create_app(swdepot.service), create_app(swdepot.service, poll_shortcut=False)


@pytest.fixture
def jobs(api, http_server_noauth, content_dir) -> dict[str, str]:
    """A finished and a failed download job: uuid by outcome."""
    make_package(content_dir, "ok.tgz", "9.18.1")
    done = api.download(http_server_noauth.url("ok.tgz"))
    failed = api.download(http_server_noauth.url("missing.tgz"))
    assert (done["state"], failed["state"]) == ("success", "failure")
    return {"success": done["uuid"], "failure": failed["uuid"]}


def assert_same(apps, path: str, **request: Any) -> Answer:
    fast, full = (call(app, path, **request) for app in apps)
    assert without_request_id(fast) == without_request_id(full)
    return fast


def test_download_status_before_any_download(apps):
    status, _, body = assert_same(apps, DOWNLOAD, headers=((b"authorization", ADMIN),))
    assert status == 200 and b'"not_started"' in body


@pytest.mark.parametrize("accept", [None, b"application/json", b"application/hal+json",
                                    b"application/json, application/hal+json", b"*/*"])
def test_polled_answers_match_the_routes(apps, jobs, accept):
    headers = ((b"authorization", ADMIN),) + (((b"accept", accept),) if accept else ())
    for path in (f"/api/cluster/jobs/{jobs['success']}", f"/api/cluster/jobs/{jobs['failure']}",
                 DOWNLOAD):
        status, _, body = assert_same(apps, path, headers=headers)
        assert status == 200
        assert (b'"_links"' in body) is (accept is None or b"hal" in accept or accept == b"*/*")


def test_refusals_and_errors_match_the_routes(apps, jobs, swdepot):
    job = f"/api/cluster/jobs/{jobs['success']}"
    cases = [
        ("/api/cluster/jobs/no-such-job", {"headers": ((b"authorization", ADMIN),)}),
        (job, {"headers": ()}),
        (job, {"headers": ((b"authorization", basic("admin", "wrong")),)}),
        (DOWNLOAD, {"headers": ((b"authorization", ADMIN), (b"content-length", b"3")),
                    "body": b"abc"}),
        (job, {"headers": ((b"authorization", ADMIN), (b"content-length", b"3")),
               "body": b"abc"}),  # the job route ignores a body
        (job, {"headers": ((b"authorization", ADMIN),), "query": b"fields=state"}),
        (job, {"headers": ((b"authorization", ADMIN),), "query": b"password=x"}),
        # two of a header: the first one counts, on both paths
        (job, {"headers": ((b"authorization", basic("admin", "wrong")),
                           (b"authorization", ADMIN))}),
        (job, {"headers": ((b"authorization", ADMIN), (b"accept", b"application/json"),
                           (b"accept", b"application/hal+json"))}),
    ]
    statuses = [assert_same(apps, path, **request)[0] for path, request in cases]
    assert statuses == [404, 401, 401, 400, 200, 200, 400, 401, 200]


def test_request_ids_are_made_or_kept(apps, jobs):
    fast, _ = apps
    path = f"/api/cluster/jobs/{jobs['success']}"
    made = dict(call(fast, path, headers=((b"authorization", ADMIN),))[1])
    assert len(made[b"x-request-id"]) == 32
    kept = dict(call(fast, path, headers=((b"authorization", ADMIN),
                                          (b"x-request-id", b"trace-7")))[1])
    assert kept[b"x-request-id"] == b"trace-7"


class Inner:
    """An app that records the paths reaching it and answers 418."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_the_shortcut_answers_only_plain_polls_with_known_credentials(swdepot, jobs):
    inner = Inner()
    shortcut = PollShortcut(inner, swdepot.service)
    job = f"/api/cluster/jobs/{jobs['success']}"
    auth = (b"authorization", ADMIN)
    # credentials the authenticator has verified before (the fixture's requests)
    for path in (job, DOWNLOAD):
        assert call(shortcut, path, headers=(auth,))[0] == 200
    assert inner.paths == []
    passed_on = [
        (job, {"headers": (auth,), "method": "HEAD"}),
        (job, {"headers": (auth,), "query": b"fields=state"}),
        (job, {"headers": (auth, (b"content-length", b"2")), "body": b"{}"}),
        (job, {"headers": (auth, (b"transfer-encoding", b"chunked"))}),
        (job, {"headers": ((b"authorization", basic("admin", "not-cached")),)}),
        (job, {"headers": ()}),
        ("/api/cluster/jobs/no-such-job", {"headers": (auth,)}),
        ("/api/cluster/jobs/", {"headers": (auth,)}),
        (job + "/x", {"headers": (auth,)}),
        ("/api//cluster/software/download", {"headers": (auth,)}),
        ("/api/cluster/jobs", {"headers": (auth,)}),
        (DOWNLOAD, {"headers": (auth,), "method": "POST"}),
    ]
    for path, request in passed_on:
        assert call(shortcut, path, **request)[0] == 418, (path, request)
    assert len(inner.paths) == len(passed_on)


def test_a_locked_out_address_is_refused_not_answered(swdepot, jobs, apps):
    """The login limit covers polls: a locked-out address gets 429 even with cached
    credentials, from the full app."""
    fast, _ = apps
    job = f"/api/cluster/jobs/{jobs['success']}"
    wrong = ((b"authorization", basic("admin", "guess")),)
    for _ in range(swdepot.settings.login_max_failures):
        call(fast, job, headers=wrong, client="127.0.0.9")
    status, headers, _ = call(fast, job, headers=((b"authorization", ADMIN),), client="127.0.0.9")
    assert status == 429 and dict(headers)[b"retry-after"]
    assert call(fast, job, headers=((b"authorization", ADMIN),))[0] == 200  # others go on


def test_polls_are_counted_under_their_route(api, jobs):
    before = scrape(api)
    for _ in range(3):
        assert api.get(f"/api/cluster/jobs/{jobs['success']}").status_code == 200
        assert api.get(DOWNLOAD).status_code == 200
    after = scrape(api)
    for route in ("/api/cluster/jobs/{uuid}", DOWNLOAD):
        counted = (value(after, "swdepot_http_requests_total", method="GET", route=route,
                         status="200")
                   - value(before, "swdepot_http_requests_total", method="GET", route=route,
                           status="200"))
        assert counted == 3, route


def test_a_failing_read_is_answered_by_the_routes(apps, jobs, swdepot, api, monkeypatch):
    """A broken store: the shortcut passes the request on, and the full app answers
    ONTAP's 500 (logged there), never a traceback."""
    def broken(_uuid: str) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(swdepot.service.jobs, "get", broken)
    status, headers, body = assert_same(apps, f"/api/cluster/jobs/{jobs['success']}",
                                        headers=((b"authorization", ADMIN),
                                                 (b"x-request-id", b"broken-7")))
    assert status == 500 and b'"262145"' in body
    assert dict(headers)[b"x-request-id"] == b"broken-7"  # the id its log line carries
    # both answers were counted (and logged) by the full app's observer
    monkeypatch.undo()
    assert value(scrape(api), "swdepot_http_requests_total", method="GET",
                 route="/api/cluster/jobs/{uuid}", status="500") == 2
