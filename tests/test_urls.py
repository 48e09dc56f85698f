"""Every URL a user can type: IDNA hosts, percent-encoded paths, Unicode credentials.

Generated names never reach a DNS resolver: Unicode goes into paths, queries and user
names against 127.0.0.1, and hosts are forms that map to 127.0.0.1 by themselves
(fullwidth digits) or that IDNA rejects before any lookup.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pkgfactory import make_package
from swdepot.errors import OntapError
from swdepot.transfer.url import parse_download_url

DOWNLOAD = "/api/cluster/software/download"
FULLWIDTH_LOOPBACK = "\uff11\uff12\uff17.\uff10.\uff10.\uff11"  # 127.0.0.1 in fullwidth


def test_hosts_go_through_idna_and_paths_are_percent_encoded():
    url, _ = parse_download_url("http://b\u00fccher.example/pak\u00e9t-9.17.1.tgz?v=\u00e9")
    assert url.url == "http://xn--bcher-kva.example/pak%C3%A9t-9.17.1.tgz?v=%C3%A9"
    assert url.file_name == "pak\u00e9t-9.17.1.tgz"
    url, _ = parse_download_url(f"http://{FULLWIDTH_LOOPBACK}:8080/x.tgz")
    assert url.host == "127.0.0.1" and url.url == "http://127.0.0.1:8080/x.tgz"
    url, _ = parse_download_url("http://127.0.0.1/already%20escaped.tgz")
    assert url.url.endswith("/already%20escaped.tgz")  # what was escaped stays so
    url, credentials = parse_download_url("ftp://us%C3%A9r:p%C3%A4ss@127.0.0.1/x.tgz")
    assert credentials.username == "us\u00e9r" and credentials.password == "p\u00e4ss"
    assert "us" not in url.url


@pytest.mark.parametrize("host", ["a\u200db.example", "\u0661\u0662.example",
                                  "x" * 70 + "\u00e9.example"])
def test_a_host_idna_rejects_is_39387137_with_the_reason(host):
    with pytest.raises(OntapError) as refused:
        parse_download_url(f"http://{host}/x.tgz")
    assert refused.value.code == 39387137
    assert "not a valid internationalized domain name" in refused.value.message


def test_a_unicode_url_to_loopback_downloads(swdepot, http_server_noauth, content_dir):
    make_package(content_dir, "pak\u00e9t-9.17.1.tgz", "9.17.1")
    port = http_server_noauth.url("x").split(":")[2].split("/")[0]
    job = swdepot.api.download(f"http://{FULLWIDTH_LOOPBACK}:{port}/pak\u00e9t-9.17.1.tgz")
    assert job["state"] == "success", job
    [got] = [r for r in http_server_noauth.requests if r.method == "GET"]
    assert got.target == "/pak%C3%A9t-9.17.1.tgz"
    record = swdepot.api.get("/api/cluster/software/packages/9.17.1?fields=file_name").json()
    assert record["file_name"] == "pak\u00e9t-9.17.1.tgz"


def test_unicode_credentials_reach_the_server_and_a_refusal_names_it(swdepot, http_server,
                                                                      content_dir):
    make_package(content_dir, "auth.tgz", "9.17.2")
    job = swdepot.api.download(http_server.url("auth.tgz"), username="us\u00e9r",
                               password="p\u00e4ss\u2603")
    assert job["state"] == "failure"
    assert "HTTP 401 Unauthorized" in job["message"], job


_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                min_size=1, max_size=24)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_TEXT.filter(lambda t: "/" not in t and "#" not in t and "?" not in t),
       query=_TEXT, user=_TEXT)
def test_any_unicode_url_ends_cleanly_never_in_internal_error(swdepot, http_server_noauth,
                                                              name, query, user):
    """Success, a clear 39387137, or a failure that names the server's answer."""
    base = http_server_noauth.url("x").rsplit("/", 1)[0]
    response = swdepot.api.post(DOWNLOAD, json={"url": f"{base}/{name}.tgz?{query}",
                                                "username": user, "password": user})
    if response.status_code == 400:
        error = response.json()["error"]
        assert error["code"] in ("39387137", "10551327"), error
        return
    assert response.status_code == 202, response.text
    job = swdepot.api.wait_job(response.json()["job"]["uuid"])
    assert job["state"] == "failure", job  # nothing by that name is served
    assert "internal error" not in job["message"].lower(), job
    assert "the server answered HTTP 404" in job["message"], job
