"""Bad input: every endpoint answers garbage with a 4xx ONTAP error, never a 500.

Property-based checks (hypothesis) drive the two parsers that see raw client text, the
query language and download URLs; a table of hostile requests then goes over the wire to
a real service. Generated URLs are only parsed here, never fetched; the service in the
wire tests runs with its outbound allow-list set to 127.0.0.1 (the ``settings`` fixture).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swdepot.api import schemas
from swdepot.api.http import http_status
from swdepot.api.query import page, parse_query
from swdepot.errors import OntapError
from swdepot.transfer.url import parse_download_url, redact

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

NAMES = st.sampled_from(["fields", "order_by", "max_records", "offset", "return_records",
                         "return_timeout", "version", "state", "size", "kind", "file_name",
                         "ignore_unknown_fields", "pretty", "uuid", "job.uuid", "x"])
VALUES = st.one_of(st.text(max_size=40),
                   st.sampled_from(["*", "**", "!", "<", ">=5", "a|b", "{}", "{a,b", "9.*",
                                    "size desc", "-1", "0", "99999999999999999999", "true",
                                    "null", "", "version,size", "*,version", "a..b", "\\"]))
RECORDS = [{"version": f"9.{i}.1", "file_name": f"p{i}.tgz", "kind": "image", "size": i * 10,
            "create_time": "2024-01-01T00:00:00+00:00", "sha256": "0" * 64, "product": None,
            "signer": None, "_links": {"self": {"href": f"/x/{i}"}}} for i in range(5)]


@FAST
@given(st.lists(st.tuples(NAMES, VALUES), max_size=6), st.booleans())
def test_query_parser_answers_only_ontap_errors(pairs, collection):
    try:
        query = parse_query(pairs, schemas.PACKAGE, collection=collection)
        if collection:  # whatever parses also evaluates (values are typed only then)
            body = page(RECORDS, query, schemas.PACKAGE, self_href="/x", raw_query=pairs)
            assert body["num_records"] <= len(RECORDS)
    except OntapError as exc:
        assert 400 <= http_status(exc) < 500 and exc.code and exc.message


@FAST
@given(st.text(max_size=300))
def test_url_parser_answers_only_ontap_errors(raw):
    try:
        url, _ = parse_download_url(raw)
    except OntapError as exc:
        assert http_status(exc) == 400 and exc.code in (39387137, 39387138)
        return
    assert url.scheme in ("http", "https", "ftp", "file")
    assert url.file_name and "/" not in url.file_name
    assert "@" not in url.url.split("/")[2]  # user information never survives


SAFE = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
               min_size=1, max_size=20)


@FAST
@given(st.sampled_from(["http", "https", "ftp"]), SAFE, SAFE,
       st.from_regex(r"[a-z0-9]{1,10}\.tgz", fullmatch=True))
def test_embedded_credentials_are_split_off_and_redacted(scheme, user, password, name):
    from urllib.parse import quote

    raw = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1/{name}"
    url, credentials = parse_download_url(raw)
    assert (credentials.username, credentials.password) == (user, password)
    assert url.url == f"{scheme}://127.0.0.1/{name}"
    assert redact(raw) == f"{scheme}://{quote(user, safe='')}:***@127.0.0.1/{name}"


# --- over the wire ------------------------------------------------------------------------------

ENDPOINTS = ["/api/cluster", "/api/cluster/software", "/api/cluster/software/download",
             "/api/cluster/software/packages", "/api/cluster/software/packages/9.1.1",
             "/api/cluster/jobs", "/api/cluster/jobs/00000000-0000-0000-0000-000000000000"]
HOSTILE_QUERIES = ["?%ff%fe=1", "?fields=%ff", "?max_records=-1", "?max_records=1e9999",
                   "?offset=abc", "?order_by=version%20sideways", "?fields={{{", "?=&&=",
                   "?return_timeout=121", "?fields=" + "a," * 2000, "?bogus=" + "x" * 5000,
                   "?return_records=maybe", "?password=x", "?x[]=1"]


def assert_ontap_4xx(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["code"] and error["message"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_hostile_query_strings_on_every_endpoint(api, path):
    for query in HOSTILE_QUERIES:
        assert_ontap_4xx(api.get(path + query))


BODIES = [
    (b'{"url": ', "application/json"),
    (b'{"url": "\xff\xfe"}', "application/json"),  # invalid UTF-8
    (b"\xff" * 100, "application/json"),
    (b"[]", "application/json"),
    (b'"just a string"', "application/json"),
    (b"null", "application/json"),
    (b'{"url": ["a"]}', "application/json"),
    (b'{"url": {"nested": 1}}', "application/json"),
    (b'{"url": 1e999}', "application/json"),
    (b'{"url": "http://127.0.0.1/x.tgz", "url": 5}', "application/json"),
    (b'{"url": "http://127.0.0.1/x.tgz", "extra": true}', "application/json"),
    (b'{"username": 5, "url": "http://127.0.0.1/x.tgz"}', "application/json"),
    (b"url=http://127.0.0.1/x.tgz", "application/x-www-form-urlencoded"),
    (b"{" * 10_000 + b"}" * 10_000, "application/json"),  # deep nesting
    (b'{"url": "' + b"a" * (2 << 20) + b'"}', "application/json"),  # larger than 1 MiB
]


def test_hostile_bodies_on_post_download(api):
    for body, content_type in BODIES:
        response = api.post("/api/cluster/software/download", data=body,
                            headers={"content-type": content_type})
        assert_ontap_4xx(response)
    assert api.get("/api/cluster/software/download").json()["state"] == "not_started"


def test_bodies_where_none_is_allowed(api):
    for path in ENDPOINTS:
        response = api.get(path, data=b'{"fields": "*"}',
                           headers={"content-type": "application/json"})
        if path in ("/api/cluster/software/download", "/api/cluster/software/packages/9.1.1"):
            assert_ontap_4xx(response)
    assert_ontap_4xx(api.delete("/api/cluster/software/packages/9.1.1", data=b"\xff\xfe"))


@pytest.mark.parametrize("path", [
    "/api/cluster/jobs/..%2f..%2fetc%2fpasswd", "/api/cluster/jobs/%00",
    "/api/cluster/software/packages/%ff%fe",
    "/api/cluster/software/packages/" + "9" * 5000, "/api/../api/cluster/jobs/x",
    "/api/cluster/software/packages/9.1.1/extra", "/api/%2e%2e/etc",
    "/api/cluster/jobs/%252e%252e",
])
def test_path_tricks_answer_4xx(api, path):
    assert_ontap_4xx(api.get(path))
    assert_ontap_4xx(api.request("PUT", path, json={}))


def test_doubled_slashes_are_one_path(api):
    """Ansible's na_ontap_rest_info follows next links as ``/api//cluster/...``."""
    assert api.get("/api/cluster//jobs").json() == api.get("/api/cluster/jobs").json()
    assert_ontap_4xx(api.request("PUT", "/api/cluster//jobs", json={}))


def test_wrong_methods_and_content_types_answer_4xx(api):
    for method in ("PUT", "PATCH", "OPTIONS", "TRACE"):
        assert_ontap_4xx(api.request(method, "/api/cluster/software/download"))
    response = api.post("/api/cluster/software/download", json={"url": "gopher://x/y"},
                        headers={"accept": "text/html"})
    assert_ontap_4xx(response)


def test_unsupported_method_names_the_allowed_ones(api):
    """RFC 9110: a 405 carries ``Allow`` (schemathesis found it missing)."""
    response = api.request("PUT", "/api/cluster/software/download", json={})
    assert response.status_code == 405 and response.json()["error"]["code"] == "3"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    response = api.request("TRACE", "/api/cluster/jobs/x")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "PATCH"}
