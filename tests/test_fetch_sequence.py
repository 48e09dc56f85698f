"""ONTAP's way of fetching: three ``HEAD`` requests, then the ``GET`` (transfer/engine.py).

NetApp's sample ``examples/python_client_library/ndu_upgrade.py`` (ontap-rest-python)
serves the image from a one-request-at-a-time ``SimpleHTTPRequestHandler`` that answers
exactly four requests — "ONTAP does 3 HEAD requests followed by the GET we care about" —
and then joins that server's thread. The first test is that server, as the sample runs
it, with netapp-ontap's ``SoftwarePackageDownload``.
"""

from __future__ import annotations

import functools
import hashlib
import socketserver
import threading
from http.server import SimpleHTTPRequestHandler

from pkgfactory import make_package
from servers import Fault

DOWNLOAD = "/api/cluster/software/download"


class _Handler(SimpleHTTPRequestHandler):
    seen: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.seen.append(self.command)


def test_the_four_request_server_of_netapps_sample_is_served_and_released(
        ontap, swdepot, content_dir):
    from netapp_ontap.resources import SoftwarePackage, SoftwarePackageDownload

    pkg = make_package(content_dir, "9171_image.tgz", "9.17.1", size=256 * 1024)
    seen: list[str] = []
    handler = functools.partial(type("Handler", (_Handler,), {"seen": seen}),
                                directory=str(content_dir))
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as httpd:
        def serve_image_download() -> None:
            for _ in range(4):
                httpd.handle_request()

        image_server = threading.Thread(target=serve_image_download, daemon=True)
        image_server.start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{pkg.name}"
        SoftwarePackageDownload(url=url).post(poll_timeout=60, poll_interval=1)
        image_server.join(timeout=20)
        assert not image_server.is_alive(), f"the sample would wait for ever: saw {seen}"
    assert seen == ["HEAD", "HEAD", "HEAD", "GET"]
    [package] = list(SoftwarePackage.get_collection(fields="version"))
    assert package.version == "9.17.1"
    stored = swdepot.api.get("/api/cluster/software/packages/9.17.1?fields=sha256").json()
    assert stored["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()


def test_https_downloads_send_the_same_sequence_with_credentials(swdepot, https_server,
                                                                   content_dir):
    make_package(content_dir, "secure.tgz", "9.17.2")
    job = swdepot.api.download(https_server.url("secure.tgz"), username="pkguser",
                               password="pkg-secret")
    assert job["state"] == "success", job
    requests = https_server.requests_for("/secure.tgz")
    assert [r.method for r in requests] == ["HEAD", "HEAD", "HEAD", "GET"]
    assert all(r.header("Authorization") for r in requests)


def test_a_size_the_heads_announce_above_the_maximum_is_refused_without_a_get(
        settings, start_service, http_server_noauth, content_dir):
    service = start_service(settings, max_package_bytes=100_000)
    make_package(content_dir, "big.tgz", "9.7.3", size=400 * 1024)
    job = service.api.download(http_server_noauth.url("big.tgz"))
    assert job["state"] == "failure"
    assert "larger than the configured maximum of 100000 bytes" in job["message"]
    assert [r.method for r in http_server_noauth.requests_for("/big.tgz")] == ["HEAD"] * 3


def test_a_server_that_refuses_head_still_serves_the_download(swdepot, http_server_noauth,
                                                              content_dir):
    pkg = make_package(content_dir, "nohead.tgz", "9.17.3")
    http_server_noauth.faults["/nohead.tgz"] = Fault("status", status=405, methods=("HEAD",))
    job = swdepot.api.download(http_server_noauth.url("nohead.tgz"))
    assert job["state"] == "success", job
    requests = http_server_noauth.requests_for("/nohead.tgz")
    assert [(r.method, r.status) for r in requests] == [("HEAD", 405)] * 3 + [("GET", 200)]
    stored = swdepot.api.get("/api/cluster/software/packages/9.17.3?fields=sha256").json()
    assert stored["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
