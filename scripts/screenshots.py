#!/usr/bin/env python3
"""Regenerate docs/screenshots: the web page in headless Chromium and a recorded terminal
session of `swdepot package get`.

    .venv/bin/pip install -q -e '.[test,docs]' && .venv/bin/python scripts/screenshots.py

Needs Debian's chromium (apt-get install chromium). Everything runs on 127.0.0.1: a
throw-away `swdepot serve`, and the test suite's HTTP server slowed down so that the
progress bars have something to show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM_FLAGS, chromium_path  # noqa: E402
from pkgfactory import make_package  # noqa: E402
from servers import ContentServer, Fault  # noqa: E402
from service import free_port  # noqa: E402

PASSWORD = "tour-password"
SWDEPOT = [sys.executable, "-m", "swdepot"]


def start_service(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SWDEPOT_ADMIN_PASSWORD": PASSWORD}
    data.mkdir(parents=True, exist_ok=True)
    config = data.parent / "fast.toml"  # an update in about 20 s instead of 20 minutes
    config.write_text("update_step_seconds = 1\nupdate_minute_seconds = 0.5\n")
    proc = subprocess.Popen([*SWDEPOT, "serve", "--config", str(config), "--data-dir",
                             str(data), "--port", str(port), "--allow-network", "127.0.0.1/32",
                             "--log-level", "warning"],
                            env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (data / "tls" / "server.crt").exists() or not _answers(port):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("swdepot serve did not start")
        time.sleep(0.1)
    return proc


def _answers(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def client_env(base: str, data: Path) -> dict[str, str]:
    return {**os.environ, "SWDEPOT_URL": base, "SWDEPOT_PASSWORD": PASSWORD,
            "SWDEPOT_CA_FILE": str(data / "tls" / "server.crt"), "COLUMNS": "100"}


def record_terminal(env: dict[str, str], url: str) -> None:
    """asciinema records `swdepot package get` in a real pseudo-terminal."""
    cast = OUT / "package-get.cast"
    recorder = Path(sys.executable).parent / "asciinema"
    if not recorder.exists():
        print(f"{recorder} is missing (pip install -e '.[docs]'): {cast.name} is left as it is")
        return
    command = f"{sys.executable} -m swdepot package get {url}"
    subprocess.run([str(recorder), "rec", "--overwrite",
                    "--quiet", "--cols", "100", "--rows", "8", "--title",
                    "swdepot package get", "--command", command, str(cast)],
                   env=env, check=True, stdin=subprocess.DEVNULL)
    print(f"wrote {cast.relative_to(ROOT)}")


def shoot_pages(base: str, slow_url: str) -> None:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(
            http_credentials={"username": "admin", "password": PASSWORD},
            ignore_https_errors=True, viewport={"width": 1200, "height": 1000}, base_url=base)
        page = context.new_page()
        page.goto("/")
        page.fill("#download-form input[name=url]", slow_url)
        page.click("#download-form button[type=submit]")
        page.wait_for_function("() => document.getElementById('download-progress').value > "
                               "document.getElementById('download-progress').max * 0.4",
                               timeout=60_000)
        page.screenshot(path=str(OUT / "web-download.png"), full_page=True)
        page.wait_for_selector('#repository tr[data-version="9.18.1"]', timeout=60_000)
        page.wait_for_function("() => document.getElementById('download-state').textContent "
                               "=== 'success'")
        page.screenshot(path=str(OUT / "web-repository.png"), full_page=True)
        # the update: validated, then run with the warnings accepted, followed to its end
        page.select_option("#update-version", "9.18.1")
        page.click("#validate-button")
        page.wait_for_function("() => document.getElementById('notice').textContent"
                               ".startsWith('Validation of 9.18.1:')")
        page.check("#skip-warnings")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#update-button")
        page.wait_for_function("() => document.querySelectorAll('#update-steps tbody tr')"
                               ".length >= 4", timeout=60_000)
        page.screenshot(path=str(OUT / "web-update.png"), full_page=True)
        page.wait_for_function("() => document.getElementById('update-state').textContent "
                               "=== 'Update completed'", timeout=120_000)
        page.screenshot(path=str(OUT / "web-update-completed.png"), full_page=True)
        narrow = context.new_page()
        narrow.set_viewport_size({"width": 420, "height": 900})
        narrow.goto("/")
        narrow.wait_for_function("() => document.getElementById('update-state').textContent "
                                 "=== 'Update completed'")
        narrow.screenshot(path=str(OUT / "web-narrow.png"), full_page=True)
        page.goto("/ui/api-docs")
        page.wait_for_selector("#swagger-ui .swagger-ui")
        if context.request.get(base + "/api/openapi.yaml").status == 200:
            page.wait_for_selector(".opblock", timeout=30_000)
            page.screenshot(path=str(OUT / "api-docs.png"))
        else:
            print("GET /api/openapi.yaml is not served yet: no api-docs.png")
        browser.close()
    print("wrote docs/screenshots/web-download.png, web-repository.png, web-update.png, "
          "web-update-completed.png, web-narrow.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="swdepot-shots-") as tmp:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        make_package(www, "swdepot-9.17.1.tgz", "9.17.1", size=24 << 20)
        make_package(www, "swdepot-9.18.1.tgz", "9.18.1", size=12 << 20)
        port = free_port()
        data = work / "data"
        service = start_service(data, port)
        with ContentServer(www) as files:
            files.faults["/swdepot-9.17.1.tgz"] = Fault("trickle", bytes_per_second=4 << 20)
            files.faults["/swdepot-9.18.1.tgz"] = Fault("trickle", bytes_per_second=2 << 20)
            base = f"https://127.0.0.1:{port}"
            try:
                record_terminal(client_env(base, data), files.url("swdepot-9.17.1.tgz"))
                shoot_pages(base, files.url("swdepot-9.18.1.tgz"))
            finally:
                service.terminate()
                service.wait(timeout=20)
    if shutil.which("asciinema") is None:
        print("replay the session with: .venv/bin/asciinema play docs/screenshots/package-get.cast")


if __name__ == "__main__":
    main()
