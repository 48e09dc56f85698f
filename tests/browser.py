"""Headless Chromium (Debian's ``chromium``) driven by Playwright, for the web page tests.

Playwright's own browser download is impossible here, so it launches the system
Chromium by path. Tests that need it skip with a clear message where it is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from realparts import missing

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        missing("Chromium is not installed (Debian package `chromium`; .ci/run installs it "
                "where apt-get is available), so the browser tests cannot run here")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True,
                                             args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
