"""The operator's web page and API docs, end to end in a real headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pkgfactory import make_package
from servers import Fault
from service import ADMIN_PASSWORD
from test_roles import viewer  # noqa: F401 (a fixture: a readonly user)

TIMEOUT_MS = 30_000


@pytest.fixture
def page(chromium, swdepot) -> Iterator[object]:
    """A logged-in page (Basic credentials) that records console errors."""
    context = chromium.new_context(
        http_credentials={"username": "admin", "password": ADMIN_PASSWORD},
        ignore_https_errors=True,  # the service's self-signed certificate
        base_url=swdepot.api.base,
    )
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.console_errors = []
    # Chromium reports every 4xx answer as "Failed to load resource"; those are expected
    pg.on("console", lambda m: m.type == "error" and not m.text.startswith(
        "Failed to load resource") and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    context.close()


def wait_text(pg, element_id: str, text: str) -> None:
    """Wait until an element's text is exactly ``text`` (the page polls every second)."""
    pg.wait_for_function("([id, text]) => document.getElementById(id).textContent === text",
                         arg=[element_id, text])


def progress_value(pg) -> float:
    return pg.eval_on_selector("#download-progress", "e => e.position >= 0 ? e.value : 0")


def test_page_needs_login(chromium, swdepot):
    """Without credentials the browser is asked to log in (Basic challenge)."""
    context = chromium.new_context(ignore_https_errors=True)
    try:
        for path in ("/", "/ui/static/app.js", "/ui/api-docs", "/metrics"):
            response = context.request.get(swdepot.api.base + path)
            assert response.status == 401, path
            assert response.headers["www-authenticate"].startswith("Basic")
    finally:
        context.close()


def test_download_progress_package_and_delete(page, http_server_noauth, content_dir):
    make_package(content_dir, "swdepot-9.18.1.tgz", "9.18.1", size=640 * 1024)
    http_server_noauth.faults["/swdepot-9.18.1.tgz"] = Fault("trickle",
                                                            bytes_per_second=128 * 1024)
    page.goto("/")
    # the cluster's software state
    wait_text(page, "software-version", "9.16.1")
    assert "swdepot-01 (9.16.1)" in page.text_content("#software-nodes")
    page.wait_for_selector("#repository-empty", state="visible")
    # start a download from the form
    page.fill("#download-form input[name=url]", http_server_noauth.url("swdepot-9.18.1.tgz"))
    page.click("#download-form button[type=submit]")
    wait_text(page, "download-state", "running")
    page.wait_for_function("() => document.getElementById('download-progress').value > 0")
    first = progress_value(page)
    # progress moves while the server trickles the bytes
    page.wait_for_function(f"() => document.getElementById('download-progress').value > {first}")
    assert "ETA" in page.text_content("#download-eta") or page.text_content("#download-state") \
        != "running"
    # the package appears in the repository with its details
    row = page.wait_for_selector('#repository tr[data-version="9.18.1"]')
    cells = [c.text_content() for c in row.query_selector_all("td")]
    assert cells[1] == "swdepot-9.18.1.tgz" and cells[2] == "image"
    assert cells[3].endswith("KiB") and cells[5] == "unsigned"
    wait_text(page, "notice", "Package download completed.")
    wait_text(page, "download-state", "success")
    assert "success" in page.text_content("#jobs tbody")
    # delete it (confirming the dialog)
    page.once("dialog", lambda dialog: dialog.accept())
    row.query_selector("button").click()
    page.wait_for_selector('#repository tr[data-version="9.18.1"]', state="detached")
    wait_text(page, "notice", "Package 9.18.1 deleted.")
    assert page.is_visible("#repository-empty")
    assert page.console_errors == []


def test_failed_download_shows_ontap_code(page, http_server_noauth):
    page.goto("/")
    page.fill("#download-form input[name=url]", http_server_noauth.url("missing.tgz"))
    page.click("#download-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('notice').className === 'error'")
    assert "(code 10551381)" in page.text_content("#notice")
    wait_text(page, "download-state", "failure")
    # a request refused before any job: the ONTAP error is shown as well
    page.fill("#download-form input[name=url]", "gopher://127.0.0.1/x.tgz")
    page.click("#download-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('notice').textContent"
                           ".includes('(code 39387138)')")
    assert page.console_errors == []


def test_upload_from_page(page, content_dir):
    pkg = make_package(content_dir, "up.tgz", "9.19.1", size=256 * 1024)
    page.goto("/")
    page.set_input_files("#upload-form input[name=file]", str(pkg))
    page.click("#upload-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('notice').textContent.length > 0 && "
                           "!document.getElementById('notice').textContent.startsWith('Uploaded')")
    if "API not found" in page.text_content("#notice"):
        pytest.skip("POST /api/cluster/software/upload answers 404 'API not found': the upload "
                    "endpoint is not in this build yet (issue 3)")
    assert page.text_content("#notice") == "Package upload completed."
    page.wait_for_selector('#repository tr[data-version="9.19.1"]')


def check_api_docs(pg) -> None:
    """Swagger UI lists the download operations and runs one with the page's login."""
    pg.wait_for_selector(".opblock")
    paths = pg.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.innerText)")
    assert any(p.endswith("/cluster/software/download") for p in paths), paths
    get = pg.locator(".opblock-get", has=pg.locator(".opblock-summary-path",
                                                     has_text="/cluster/software/download"))
    get.first.locator(".opblock-summary").click()
    get.first.locator("text=Try it out").click()
    get.first.locator("text=Execute").click()
    status = get.first.locator(".live-responses-table tbody .response-col_status")
    status.first.wait_for()
    assert status.first.inner_text().strip() == "200", status.first.inner_text()


def test_api_docs_page(page):
    page.goto("/ui/api-docs")
    page.wait_for_selector("#swagger-ui .swagger-ui")
    check_api_docs(page)
    assert page.console_errors == []


# --- the update, downloads, jobs, roles and layout (issue 18) -----------------------------

def load_package(swdepot, http_server_noauth, content_dir, version: str) -> None:
    """Put an unsigned package of ``version`` into the repository through the API."""
    make_package(content_dir, f"swdepot-{version}.tgz", version, size=4096)
    job = swdepot.api.download(http_server_noauth.url(f"swdepot-{version}.tgz"))
    assert job["state"] == "success", job


def wait_contains(pg, selector: str, text: str) -> None:
    pg.wait_for_function("([s, text]) => (document.querySelector(s) || {}).textContent"
                         "?.includes(text)", arg=[selector, text])


def test_update_validated_run_resumed_to_completed_and_canceled(page, swdepot,
                                                                 http_server_noauth,
                                                                 content_dir):
    """System Manager's way: validate, update, follow the phases, resume, the outcome."""
    load_package(swdepot, http_server_noauth, content_dir, "9.17.1")
    page.goto("/")
    page.wait_for_selector('#update-version option[value="9.17.1"]', state="attached")
    page.select_option("#update-version", "9.17.1")
    # validation: each check with its status, issue and action
    page.click("#validate-button")
    wait_contains(page, "#notice", "Validation of 9.17.1: 1 warning")
    row = page.wait_for_selector("#validation-results tbody tr")
    cells = [c.text_content() for c in row.query_selector_all("td")]
    assert cells[0] == "Package signature" and cells[1] == "warning"
    assert "not signed" in cells[2] and cells[3]
    assert page.is_hidden("#update")  # a validation starts nothing
    # an update that keeps the warnings pauses on them, with the way on
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#update-button")
    wait_text(page, "update-state", "Update paused on error")
    assert "warnings" in page.text_content("#update-outcome")
    assert page.eval_on_selector("#update-bar", "e => e.className") == "failed"
    assert page.is_visible("#update-resume") and page.is_visible("#update-cancel")
    assert page.is_hidden("#update-pause")
    assert page.is_disabled("#update-button")  # one update at a time
    phases = page.eval_on_selector_all("#update-phases tbody tr",
                                       "rows => rows.map(r => r.cells[0].textContent)")
    assert phases == ["Pre-update checks", "Data ONTAP updates", "Data ONTAP updates",
                      "Post-update checks"]
    page.click("#update-resume")
    wait_text(page, "update-state", "Update completed")
    wait_text(page, "update-outcome", "Update completed: every node runs 9.17.1.")
    assert page.eval_on_selector("#update-bar", "e => e.className") == "done"
    states = page.eval_on_selector_all("#update-steps tbody tr",
                                       "rows => rows.map(r => r.cells[2].textContent)")
    assert set(states) == {"completed"} and len(states) >= 9
    assert "Image update complete" in page.text_content("#update-steps")
    wait_text(page, "software-version", "9.17.1")
    assert page.text_content("#software-nodes") == "swdepot-01 (9.17.1), swdepot-02 (9.17.1)"
    assert page.is_hidden("#update-resume") and page.is_hidden("#update-cancel")
    jobs = page.eval_on_selector_all("#jobs tbody tr", "rows => rows.map(r => r.cells[1]"
                                                       ".textContent)")
    assert jobs[:3] == ["Resume the update", "Update to 9.17.1", "Validate 9.17.1"], jobs
    # the next one is canceled while it waits on its warnings
    load_package(swdepot, http_server_noauth, content_dir, "9.18.1")
    page.wait_for_selector('#update-version option[value="9.18.1"]', state="attached")
    page.select_option("#update-version", "9.18.1")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#update-button")
    wait_text(page, "update-state", "Update paused on error")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#update-cancel")
    wait_text(page, "update-state", "Update canceled")
    wait_text(page, "update-outcome", "Update canceled. Nodes already updated stay updated.")
    page.wait_for_selector("#update-button:enabled")
    assert page.console_errors == []


def test_update_skipping_warnings_runs_to_completed(page, swdepot, http_server_noauth,
                                                    content_dir):
    load_package(swdepot, http_server_noauth, content_dir, "9.17.1")
    page.goto("/")
    page.wait_for_selector('#update-version option[value="9.17.1"]', state="attached")
    page.check("#skip-warnings")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#update-button")
    wait_text(page, "update-state", "Update completed")
    assert "Pre-update checks" in page.text_content("#update-phases")
    assert page.text_content("#update-time").startswith("took ")
    assert page.console_errors == []


def test_cancel_a_running_download(page, http_server_noauth, content_dir):
    make_package(content_dir, "slow.tgz", "9.18.1", size=2 << 20)
    http_server_noauth.faults["/slow.tgz"] = Fault("trickle", bytes_per_second=64 * 1024)
    page.goto("/")
    page.fill("#download-form input[name=url]", http_server_noauth.url("slow.tgz"))
    page.click("#download-form button[type=submit]")
    wait_text(page, "download-state", "running")
    page.wait_for_function("() => document.getElementById('download-speed').textContent"
                           ".endsWith('/s')")
    wait_contains(page, "#download-eta", "ETA ")
    page.click("#download-cancel")
    wait_text(page, "download-state", "failure")
    assert "canceled" in page.text_content("#download-message")
    assert "(code 10551381)" in page.text_content("#download-message")
    assert page.eval_on_selector("#download-progress", "e => e.className") == "failed"
    assert page.is_hidden("#download-cancel")
    wait_contains(page, "#notice", "(code 10551381)")
    row = page.wait_for_selector("#jobs tbody tr")
    cells = [c.text_content() for c in row.query_selector_all("td")]
    assert cells[1] == "Download " + http_server_noauth.url("slow.tgz")
    assert cells[2] == "swdepot-01" and cells[3].endswith("s") and cells[4] == "failure"
    assert page.console_errors == []


def test_a_refused_request_replaces_the_stale_card(page, http_server_noauth, content_dir):
    make_package(content_dir, "ok.tgz", "9.18.1", size=4096)
    page.goto("/")
    page.fill("#download-form input[name=url]", http_server_noauth.url("ok.tgz"))
    page.click("#download-form button[type=submit]")
    wait_text(page, "download-state", "success")
    page.fill("#download-form input[name=url]", http_server_noauth.url("ok.tgz"))
    page.click("#download-form button[type=submit]")  # the same file again: refused
    wait_text(page, "download-state", "refused")
    assert "(code 10551327)" in page.text_content("#download-message")
    assert page.text_content("#download-bytes") == ""
    page.wait_for_timeout(1500)  # polls do not bring the old success back
    assert page.text_content("#download-state") == "refused"
    assert page.console_errors == []


def test_upload_button_is_disabled_during_the_upload(page, content_dir):
    pkg = make_package(content_dir, "up.tgz", "9.19.1", size=256 * 1024)
    page.goto("/")
    wait_text(page, "software-version", "9.16.1")
    page.evaluate("""() => { window.seenDisabled = false;
        const b = document.querySelector('#upload-form button[type=submit]');
        new MutationObserver(() => { if (b.disabled) window.seenDisabled = true; })
            .observe(b, {attributes: true}); }""")
    page.set_input_files("#upload-form input[name=file]", str(pkg))
    page.click("#upload-form button[type=submit]")
    wait_text(page, "notice", "Package upload completed.")
    assert page.evaluate("window.seenDisabled")
    page.wait_for_selector("#upload-form button[type=submit]:enabled")
    row = page.wait_for_selector("#jobs tbody tr")
    assert row.query_selector_all("td")[1].text_content() == "Upload up.tgz"


def test_jobs_most_recent_first_filtered_and_limited(page, swdepot, http_server_noauth,
                                                    content_dir):
    load_package(swdepot, http_server_noauth, content_dir, "9.17.1")
    for _ in range(11):  # validations: short jobs
        response = swdepot.api.patch("/api/cluster/software?validate_only=true",
                                     json={"version": "9.17.1"})
        swdepot.api.wait_job(response.json()["job"]["uuid"])
    swdepot.api.download(http_server_noauth.url("missing.tgz"))  # a failure, the latest
    page.goto("/")
    page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 10")
    first = page.eval_on_selector("#jobs tbody tr", "r => [...r.cells].map(c => c.textContent)")
    assert first[1] == "Download " + http_server_noauth.url("missing.tgz")
    assert first[4] == "failure" and "(code 10551381)" in first[5]
    assert page.text_content("#jobs-summary") == "10 of 13"
    page.click("#jobs-more")
    page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 13")
    assert page.is_hidden("#jobs-more")
    page.select_option("#jobs-state", "failure")
    page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 1")
    page.select_option("#jobs-state", "running")
    page.wait_for_selector("#jobs-empty", state="visible")
    assert page.console_errors == []


def test_a_readonly_user_sees_no_write_control(chromium, swdepot, viewer,  # noqa: F811
                                               http_server_noauth,
                                               content_dir):
    load_package(swdepot, http_server_noauth, content_dir, "9.17.1")
    context = chromium.new_context(http_credentials={"username": viewer[0],
                                                     "password": viewer[1]},
                                   ignore_https_errors=True, base_url=swdepot.api.base)
    try:
        pg = context.new_page()
        pg.goto("/")
        wait_text(pg, "session-user", "viewer (readonly) ·")
        pg.wait_for_selector('#repository tr[data-version="9.17.1"]')
        for selector in ("#download-form", "#upload-form", "#update-form",
                         '#repository tr[data-version="9.17.1"] button', "#download-cancel",
                         "#update-pause", "#update-resume", "#update-cancel"):
            assert pg.is_hidden(selector), selector
        visible = pg.eval_on_selector_all(
            "button, input, select", "els => els.filter(e => e.offsetParent !== null)"
                                     ".map(e => e.id || e.name || e.textContent)")
        assert visible == ["jobs-state"], visible
        # what they may read is there
        assert pg.text_content("#software-version") == "9.16.1"
        assert "success" in pg.text_content("#jobs tbody")
    finally:
        context.close()
    response = swdepot.api.get("/api/swdepot/session")
    assert response.json()["may_write"] is True


@pytest.mark.parametrize("width", [420, 360])
def test_narrow_viewport_does_not_overflow(page, swdepot, http_server_noauth, content_dir,
                                           width):
    long_name = "swdepot-9.17.1-" + "x" * 60 + ".tgz"
    make_package(content_dir, long_name, "9.17.1", size=4096)
    swdepot.api.download(http_server_noauth.url(long_name))
    swdepot.api.download(http_server_noauth.url("missing-" + "y" * 60 + ".tgz"))
    page.set_viewport_size({"width": width, "height": 800})
    page.goto("/")
    page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 2")
    page.wait_for_selector('#repository tr[data-version="9.17.1"]')
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, "
                          "document.documentElement.clientWidth]")
    assert sizes[0] <= sizes[1] == width, sizes
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
        .map(e => e.id || e.tagName)""")
    assert wide == [], wide
    assert page.console_errors == []


def test_credentials_in_the_page_url_do_not_break_fetches(chromium, swdepot):
    context = chromium.new_context(ignore_https_errors=True)
    try:
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        host = swdepot.api.base.removeprefix("https://")
        pg.goto(f"https://admin:{ADMIN_PASSWORD}@{host}/")
        wait_text(pg, "software-version", "9.16.1")
        wait_text(pg, "cluster-name", "swdepot")
        assert pg.text_content("h1") == "swdepot software packages and updates"
        assert pg.is_hidden("#notice") and errors == []
    finally:
        context.close()


def test_a_refused_login_is_a_sentence(chromium, swdepot):
    context = chromium.new_context(ignore_https_errors=True)
    try:
        for auth in ({}, {"authorization": "Basic YWRtaW46d3Jvbmc="}):  # admin:wrong
            response = context.request.get(swdepot.api.base + "/", headers={
                "accept": "text/html,application/xhtml+xml", **auth})
            assert response.status == 401
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["www-authenticate"].startswith("Basic")
            assert "The user name or password is wrong" in response.text()
            assert '"error"' not in response.text()
        api = context.request.get(swdepot.api.base + "/api/cluster",
                                  headers={"accept": "text/html"})
        assert api.status == 401 and api.json()["error"]["code"] == "6"  # the API stays JSON
    finally:
        context.close()
