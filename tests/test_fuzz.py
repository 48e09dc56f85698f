"""schemathesis over every operation of swdepot's OpenAPI document, against a live service.

Each operation gets a fresh in-process service (``swdepot`` fixture: its own data dir,
the import directory an empty tmp dir, the outbound allow-list 127.0.0.1 only) and a
bounded number of generated requests, valid and invalid ones (schemathesis's positive
and negative modes). Every answer must be no 5xx and conform to the document: a
documented status code, a documented media type and headers, a body matching the
schema; methods the document does not list answer 405 with ``Allow``.

Download URLs: the allow-list is checked after DNS resolution, so a generated host name
would still be looked up. To keep every generated request on the machine, a URL that
swdepot's own parser accepts (and would therefore fetch) has its host and port replaced
by a real loopback HTTP server before it is sent; URLs the parser refuses are sent as
generated, since the service refuses them with the same parser before any connection.

The run is derandomized so the suite is repeatable; ``SWDEPOT_FUZZ_EXAMPLES`` and
``SWDEPOT_FUZZ_RANDOM=1`` make a longer, random exploration (see docs/reliability.md).
"""

from __future__ import annotations

import os
from importlib.resources import files
from urllib.parse import SplitResult, urlsplit, urlunsplit

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from pkgfactory import make_package
from swdepot.errors import OntapError
from swdepot.transfer.url import parse_download_url

EXAMPLES = int(os.environ.get("SWDEPOT_FUZZ_EXAMPLES", "25"))
# Not run: positive_data_acceptance (ONTAP answers 400 to valid requests the state refuses,
# e.g. a second download) and negative_data_rejection (ONTAP accepts more than a schema can
# say: `True` for booleans, blank `order_by` items, unknown `fields` with
# ignore_unknown_fields).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, unsupported_method]


# the packaged document is static, so it loads at import and every operation becomes
# its own test item (schemathesis's lazy from_fixture loader does not run on pytest 9)
schema = schemathesis.openapi.from_dict(
    yaml.safe_load(files("swdepot.api").joinpath("openapi.yaml").read_bytes()))


def confined(raw: str, loopback: str) -> str:
    """``raw`` with its host moved to ``loopback`` (host:port) if swdepot would fetch it."""
    try:
        url, _ = parse_download_url(raw)
    except OntapError:
        return raw  # refused by the service before any connection
    if url.scheme == "file":
        return raw  # read from the (empty) import directory, never from a host
    parts = urlsplit(raw)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(SplitResult(parts.scheme, f"{userinfo}{at}{loopback}", parts.path,
                                  parts.query, parts.fragment))


def test_confined_keeps_everything_but_the_host():
    loopback = "127.0.0.1:8"
    assert confined("https://u:p@example.com:444/a/b.tgz?x=1", loopback) == \
        "https://u:p@127.0.0.1:8/a/b.tgz?x=1"
    assert confined("ftp://[::1]/x.tgz", loopback) == "ftp://127.0.0.1:8/x.tgz"
    assert confined("gopher://example.com/x.tgz", loopback) == "gopher://example.com/x.tgz"
    assert confined("file:///x.tgz", loopback) == "file:///x.tgz"
    for raw in ("http://example.com/x.tgz", "HTTP://ex%41mple.com:1/x.tgz", "http://a@b@c/x"):
        url, _ = parse_download_url(confined(raw, loopback))
        assert (url.host, url.port) == ("127.0.0.1", 8), raw


SEEDED = "9.18.1"  # the document's example version: the examples phase finds it


@pytest.fixture
def seeded_api(api, tmp_path):
    """A service whose repository holds one package, so lookups, filters on numbers,
    deletes and update validation reach past "not found"."""
    pkg = make_package(tmp_path, f"swdepot-{SEEDED}.tgz", SEEDED, size=16 * 1024)
    with pkg.open("rb") as fh:
        response = api.post("/api/cluster/software/upload?return_timeout=60",
                            files={"file": (pkg.name, fh, "application/octet-stream")})
    assert response.status_code == 201, response.text
    return api


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          derandomize=os.environ.get("SWDEPOT_FUZZ_RANDOM") != "1",
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case, seeded_api, http_server_noauth):
    if isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
        case.body["url"] = confined(case.body["url"], http_server_noauth.url("")
                                    .split("/")[2])
    api = seeded_api
    case.call_and_validate(base_url=api.base, session=api.session, checks=CHECKS,
                           verify=api.session.verify)
