"""/metrics, request ids and structured logs, against real services and servers."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pkgfactory import make_package
from servers import Fault
from service import ADMIN_PASSWORD, free_port
from swdepot.api.runtime import LoopLagMonitor

DOWNLOAD = "/api/cluster/software/download"


def scrape(api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples by (name, sorted labels)."""
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_login(swdepot):
    with requests.Session() as s:
        s.trust_env = False
        response = s.get(swdepot.api.base + "/metrics", verify=str(swdepot.cert))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")


def test_download_outcomes_bytes_durations_and_repository(api, http_server_noauth, content_dir):
    pkg = make_package(content_dir, "ok.tgz", "9.18.1", size=128 * 1024)
    assert api.download(http_server_noauth.url("ok.tgz"))["state"] == "success"
    assert api.download(http_server_noauth.url("missing.tgz"))["state"] == "failure"
    refused = api.post(DOWNLOAD, json={"url": "gopher://127.0.0.1/x.tgz"})
    assert refused.status_code == 400  # refused before any job: not a started download
    m = scrape(api)
    assert value(m, "swdepot_downloads_started_total") == 2
    assert value(m, "swdepot_downloads_succeeded_total") == 1
    assert value(m, "swdepot_downloads_failed_total", code="10551381") == 1
    assert value(m, "swdepot_transfer_bytes_total", kind="download") >= pkg.stat().st_size
    assert value(m, "swdepot_job_duration_seconds_count", kind="download", state="success") == 1
    assert value(m, "swdepot_job_duration_seconds_count", kind="download", state="failure") == 1
    assert value(m, "swdepot_download_speed_bytes_per_second_count") == 1
    assert value(m, "swdepot_repository_packages", kind="image") == 1
    assert value(m, "swdepot_repository_bytes", kind="image") == pkg.stat().st_size
    assert value(m, "swdepot_download_active") == 0
    # HTTP requests by route template and status, not by raw path
    assert value(m, "swdepot_http_requests_total", method="POST",
                 route="/api/cluster/software/download", status="202") == 2
    assert value(m, "swdepot_http_requests_total", method="POST",
                 route="/api/cluster/software/download", status="400") == 1
    assert value(m, "swdepot_http_requests_total", method="GET",
                 route="/api/cluster/jobs/{uuid}", status="200") >= 2
    api.get("/api/no/such/thing")
    after = scrape(api)
    assert value(after, "swdepot_http_requests_total", method="GET", route="<unmatched>",
                 status="404") == 1
    # deleting empties the repository figures at the next scrape
    job = api.delete("/api/cluster/software/packages/9.18.1").json()["job"]
    assert api.wait_job(job["uuid"])["state"] == "success"
    final = scrape(api)
    assert value(final, "swdepot_repository_packages", kind="image") == 0
    assert value(final, "swdepot_job_duration_seconds_count", kind="delete_package",
                 state="success") == 1


def test_repository_figures_are_shared_across_processes(settings, start_service,
                                                        http_server_noauth, content_dir):
    """Two services on one data directory: what one stores, the other's /metrics reports."""
    first = start_service(settings)
    second = start_service(settings, port=free_port(), node_name="swdepot-02")
    pkg = make_package(content_dir, "shared.tgz", "9.18.1")
    assert first.api.download(http_server_noauth.url("shared.tgz"))["state"] == "success"
    m = scrape(second.api)
    assert value(m, "swdepot_repository_packages", kind="image") == 1
    assert value(m, "swdepot_repository_bytes", kind="image") == pkg.stat().st_size
    assert value(m, "swdepot_downloads_started_total") == 0  # events are per process


def test_running_download_progress_is_scraped(api, http_server_noauth, content_dir):
    make_package(content_dir, "slow.tgz", "9.18.1", size=512 * 1024)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=128 * 1024)
    job = api.post(DOWNLOAD, json={"url": http_server_noauth.url("slow.tgz")}).json()["job"]
    deadline = time.monotonic() + 30
    seen = None
    while time.monotonic() < deadline:
        m = scrape(api)
        if value(m, "swdepot_download_active") == 1 and value(m, "swdepot_download_bytes_done"):
            seen = m
            break
        time.sleep(0.1)
    assert seen is not None, "no progress seen in /metrics"
    assert value(seen, "swdepot_download_bytes_total") > 0
    assert api.wait_job(job["uuid"])["state"] == "success"
    assert value(scrape(api), "swdepot_download_active") == 0


def test_request_id_header(api):
    first = api.get("/api/cluster")
    second = api.get("/api/cluster")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    mine = api.get("/api/cluster", headers={"x-request-id": "trace-42.a"})
    assert mine.headers["x-request-id"] == "trace-42.a"
    odd = api.get("/api/cluster", headers={"x-request-id": "x" * 65})
    assert odd.headers["x-request-id"] != "x" * 65
    refused = requests.get(api.base + "/api/cluster", verify=api.session.verify, timeout=10)
    assert refused.status_code == 401 and refused.headers["x-request-id"]


def test_json_logs_carry_request_ids_and_never_secrets(service_process, tmp_path,
                                                        http_server, ftp_server, content_dir):
    """A real ``swdepot serve`` at info level: every line is JSON; no password appears."""
    log_file = tmp_path / "swdepot.log"
    with log_file.open("ab") as log:
        api = service_process.start(args=("--log-level", "info"), stderr=log)
    make_package(content_dir, "auth.tgz", "9.17.1")
    make_package(content_dir, "embedded.tgz", "9.18.1")
    make_package(content_dir, "ftp.tgz", "9.19.1")
    secret_http = http_server.password
    response = api.post(DOWNLOAD, json={"url": http_server.url("auth.tgz"),
                                        "username": http_server.username,
                                        "password": secret_http})
    request_id = response.headers["x-request-id"]
    assert api.wait_job(response.json()["job"]["uuid"])["state"] == "success"
    embedded = http_server.url("embedded.tgz").replace(
        "://", f"://{http_server.username}:{secret_http}@")
    assert api.download(embedded)["state"] == "success"
    wrong = "wrong-Secret-4711"
    assert api.download(ftp_server.url("ftp.tgz"), username=ftp_server.username,
                        password=wrong)["state"] == "failure"
    bad_login = requests.get(api.base + "/api/cluster", auth=("admin", "guess-Secret-99"),
                             verify=api.session.verify, timeout=10)
    assert bad_login.status_code == 401
    # a request the server cannot parse as JSON, carrying a password in its body
    api.post(DOWNLOAD, data='{"url": "x", "password": "body-Secret-12"')
    service_process.stop()  # flush everything

    text = log_file.read_text()
    for secret in (secret_http, wrong, "guess-Secret-99", "body-Secret-12", ADMIN_PASSWORD):
        assert secret not in text, f"{secret!r} leaked into the logs"
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(r) for r in lines)
    mine = [r for r in lines if r.get("request_id") == request_id]
    # the access line and the job's own "downloaded" line share the request's id
    assert any(r["logger"] == "swdepot.access" and r["status"] == 202 for r in mine)
    assert any("downloaded" in r["message"] for r in mine)
    access = [r for r in lines if r["logger"] == "swdepot.access"]
    assert any(r["status"] == 401 and r["user"] is None for r in access)
    assert all("authorization" not in json.dumps(r).lower() for r in lines)



def test_loop_lag_monitor_samples_at_its_interval_and_sees_a_stall() -> None:
    """The monitor wakes once per interval and records how late it woke."""
    for bad in (0, -1.0):
        with pytest.raises(ValueError):
            LoopLagMonitor(bad)

    async def scenario() -> dict:
        monitor = LoopLagMonitor(0.01)
        monitor.start()
        await asyncio.sleep(0.2)
        time.sleep(0.1)  # a blocking call on the loop: the kind of bug the monitor exists for
        await asyncio.sleep(0.05)
        await monitor.stop()
        return monitor.snapshot()

    figures = asyncio.run(scenario())
    assert 5 <= figures["samples"] <= 30
    assert figures["max"] >= 80  # ms: the 100 ms stall, less the interval it overlapped
