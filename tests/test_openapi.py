"""swdepot's OpenAPI document describes what the service really does.

Three checks: the document is valid OpenAPI and is what the service serves; its
operations are exactly the routes the app serves (walked from Starlette's route table);
and the answers of a real happy-path run, errors included, validate against it
(openapi-core checks the status code, the media type, the headers and the body).
The schemathesis run over every operation is ``test_fuzz.py``.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from typing import Any

import pytest
import requests
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_spec_validator import validate

import swdepot
from pkgfactory import make_package
from swdepot.api.routes import ROUTES
from swdepot.web import routes as web
from swdepot.web.routes import OPENAPI_URL

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(files("swdepot.api").joinpath("openapi.yaml").read_bytes())


def test_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.")
    assert document["info"]["version"] == swdepot.__version__


def test_service_serves_the_document(api, document):
    response = api.get(OPENAPI_URL)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(response.content) == document
    as_json = api.get("/api/openapi.json")
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == document
    assert requests.get(api.base + OPENAPI_URL, verify=api.session.verify,
                        timeout=30).status_code == 401


def served_operations() -> set[tuple[str, str]]:
    """(path, method) of every API route; the browser pages (swdepot.web) are not API.

    Starlette answers HEAD for every GET route by itself; ONTAP documents no HEAD.
    """
    operations = set()
    for route in ROUTES:
        if route in web.ROUTES:
            continue
        assert route.methods, f"{route.path} is not a plain route: describe it in the document"
        operations |= {(route.path, m.lower()) for m in route.methods if m != "HEAD"}
    return operations


def test_every_route_is_documented_and_every_operation_served(document):
    documented = {(path, method) for path, item in document["paths"].items()
                  for method in item if method in METHODS}
    served = served_operations()
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_operations_document_their_errors(document):
    """Every operation says how it fails: 401 always, 403 on writes, 400 where input is read."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            codes = set(operation["responses"])
            assert "401" in codes and "429" in codes, (method, path)
            if method not in ("get", "options"):
                assert {"400", "403"} <= codes, (method, path)
            assert "default" not in codes, "a default response would hide undocumented codes"


class Checked:
    """Sends requests through the test's session and validates each answer."""

    def __init__(self, api, document: dict[str, Any]) -> None:
        self.api = api
        # openapi-core knows application/json only; HAL is JSON with links
        config = Config(extra_media_type_deserializers={"application/hal+json": json.loads,
                                                        "application/yaml": yaml.safe_load})
        self.openapi = OpenAPI.from_dict({**document, "servers": [{"url": api.base}]},
                                         config=config)
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, method: str, path: str, expect: int, *, valid: bool = True,
                 **kwargs: Any) -> requests.Response:
        """``valid=False``: a request the document itself rejects (its answer still counts)."""
        response = self.api.request(method, path, **kwargs)
        assert response.status_code == expect, (method, path, response.text[:300])
        if valid:
            self.openapi.validate_request(RequestsOpenAPIRequest(response.request))
        self.openapi.validate_response(RequestsOpenAPIRequest(response.request),
                                       RequestsOpenAPIResponse(response))
        self.seen.add((method.lower(), path.split("?")[0]))
        return response


def wait_job(check: Checked, uuid: str) -> dict[str, Any]:
    body = check.api.wait_job(uuid)
    return check("GET", f"/api/cluster/jobs/{uuid}", 200).json() | {"state": body["state"]}


def test_happy_path_answers_validate(api, document, content_dir, tmp_path,
                                     http_server_noauth):
    check = Checked(api, document)
    check("GET", "/api/cluster", 200)
    check("GET", "/api/cluster", 200, headers={"accept": "application/json"})
    check("GET", "/api/cluster/software?fields=nodes,version", 200)
    check("GET", "/api/cluster/software/download", 200)
    check("GET", "/api/cluster/software/packages", 200)
    check("DELETE", "/api/cluster/software/packages/9.18.1", 404)
    # a download, waited for with return_timeout
    make_package(content_dir, "swdepot-9.18.1.tgz", "9.18.1", size=32 * 1024)
    created = check("POST", "/api/cluster/software/download?return_timeout=60", 201,
                    json={"url": http_server_noauth.url("swdepot-9.18.1.tgz")})
    job = created.json()["job"]["uuid"]
    assert wait_job(check, job)["state"] == "success"
    assert check("GET", f"/api/cluster/jobs/{job}", 200).json()["target"] \
        == http_server_noauth.url("swdepot-9.18.1.tgz")
    check("GET", "/api/cluster/software/download", 200)
    check("POST", "/api/cluster/software/download", 400,
          json={"url": http_server_noauth.url("swdepot-9.18.1.tgz")})  # same name: 10551327
    # an upload, followed as a job
    pkg = make_package(tmp_path, "swdepot-9.19.1.tgz", "9.19.1", size=32 * 1024)
    with pkg.open("rb") as fh:
        accepted = check("POST", "/api/cluster/software/upload", 202,
                         files={"file": (pkg.name, fh, "application/octet-stream")})
    assert wait_job(check, accepted.json()["job"]["uuid"])["state"] == "success"
    # the repository, every query convention
    check("GET", "/api/cluster/software/packages?fields=*&order_by=version%20desc"
                 "&max_records=1", 200)
    check("GET", "/api/cluster/software/packages?version=9.1*&return_records=false", 200)
    check("GET", "/api/cluster/software/packages?fields=bogus", 400, valid=False)
    check("GET", "/api/cluster/software/packages/9.18.1", 200)
    check("GET", "/api/cluster/software/packages/9.18.1", 200,
          headers={"accept": "application/json"})
    check("GET", "/api/cluster/software/packages/0.0.0", 404)
    # validation and a rolling update, as jobs
    validated = check("PATCH", "/api/cluster/software?validate_only=true", 202,
                      json={"version": "9.19.1"})
    assert wait_job(check, validated.json()["job"]["uuid"])["state"] == "success"
    check("GET", "/api/cluster/software", 200)
    # an update that pauses on the package's warnings, read while paused, then canceled
    held = check("PATCH", "/api/cluster/software", 202, json={"version": "9.19.1"})
    assert wait_job(check, held.json()["job"]["uuid"])["state"] == "success"
    api.wait_software("paused_on_error")
    check("GET", "/api/cluster/software", 200)
    canceled = check("PATCH", "/api/cluster/software?action=cancel", 202, json={})
    assert wait_job(check, canceled.json()["job"]["uuid"])["state"] == "success"
    api.wait_software("canceled")
    check("PATCH", "/api/cluster/software?return_timeout=30&skip_warnings=true"
                   "&stabilize_minutes=1", 200, json={"version": "9.19.1"})
    api.wait_software("completed", "failed")
    check("GET", "/api/cluster/software", 200)
    check("GET", "/api/cluster/software/history?fields=*", 200)
    # jobs
    check("GET", "/api/cluster/jobs?state=success&order_by=start_time&fields=uuid,state", 200)
    check("PATCH", f"/api/cluster/jobs/{job}?action=cancel", 400)  # finished: 458762
    check("GET", "/api/cluster/jobs/00000000-0000-0000-0000-000000000000", 404)
    # nodes
    nodes = check("GET", "/api/cluster/nodes", 200).json()["records"]
    check("GET", "/api/cluster/nodes?fields=*&state=up&return_records=false", 200)
    check("GET", f"/api/cluster/nodes/{nodes[0]['uuid']}?fields=state,version", 200)
    check("GET", "/api/cluster/nodes/00000000-0000-0000-0000-000000000000", 404)
    # the CLI passthrough
    cli = "/api/private/cli/cluster/"
    for path in ("image", "image/update-progress", "image/package/repository",
                 "image/package", "image/package/get", "image/package/check-download-progress",
                 "image/validate", "image/update", "image/pause-update", "image/resume-update",
                 "image/cancel-update", "ha"):
        check("OPTIONS", cli + path, 200)
    check("GET", cli + "image?fields=version,date", 200)
    check("GET", cli + "image/update-progress?fields=phase_status,elapsed_duration", 200)
    check("GET", cli + "image/package/repository?fields=component_name", 200)
    check("POST", cli + "image/package/check-download-progress", 200)
    check("PATCH", cli + "image/package/check-download-progress", 200)
    check("POST", cli + "image/package/get", 400, json={})  # no url
    check("PATCH", cli + "image/package/get?url=" + http_server_noauth.url(
        "swdepot-9.18.1.tgz"), 400)  # the same file name again
    check("POST", cli + "image/validate?return_timeout=30", 200, json={"version": "9.19.1"})
    check("PATCH", cli + "image/validate?version=9.19.1&return_timeout=30", 200)
    check("POST", cli + "image/update", 400, json={"version": "9.19.1"})  # already there
    check("PATCH", cli + "image/update?version=9.18.1&estimate_only=true", 200)  # a plan
    for action in ("pause", "resume", "cancel"):  # no update runs
        check("POST", cli + f"image/{action}-update", 400)
        check("PATCH", cli + f"image/{action}-update", 400)
    check("GET", cli + "ha?fields=configured", 200)
    check("PATCH", cli + "ha", 200, json={"configured": True})
    check("DELETE", cli + "image/package?version=9.19.1&return_timeout=30", 200)
    # delete, waited for
    check("DELETE", "/api/cluster/software/packages/9.18.1?return_timeout=30", 200)
    # swdepot's own endpoints
    check("GET", "/api/swdepot/runtime?reset=true", 200)
    assert check("GET", "/api/swdepot/session", 200).json()["role"] == "admin"
    check("GET", "/metrics", 200)
    check("GET", OPENAPI_URL, 200)
    check("GET", "/api/openapi.json", 200)
    # no credentials
    anonymous = requests.Session()
    anonymous.verify = api.session.verify
    anonymous.trust_env = False
    response = anonymous.get(api.base + "/api/cluster/jobs", timeout=30)
    assert response.status_code == 401
    check.openapi.validate_response(RequestsOpenAPIRequest(response.request),
                                    RequestsOpenAPIResponse(response))
    # every operation was exercised
    for path, method in served_operations():
        template = re.compile(re.sub(r"\{\w+\}", "[^/]+", path))
        assert any(m == method and template.fullmatch(p) for m, p in check.seen), (method, path)
