"""The UI as a user meets it: the real served app in Debian's Chromium, driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, HttpCredentials, Page, sync_playwright

from tests.conftest import API_KEY


@pytest.fixture(scope="session")
def server_url(served_app: str) -> str:
    """The real product (Ray Serve: ingress with the UI at `/`, a model replica)."""
    return served_app


UI_LOGIN: HttpCredentials = {"username": "operator", "password": API_KEY}
"""What a user types into the browser's sign-in prompt: any name, the server's API key."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope: sync Playwright runs an event loop in this thread, which must be gone before async tests.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (no downloaded browser); skipped where it is not installed."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}; install Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def ui_page(chromium: Browser, server_url: str) -> Iterator[Page]:
    """A fresh browser tab on the UI, loaded and ready to take a file."""
    context = chromium.new_context(
        viewport={"width": 1400, "height": 1000}, accept_downloads=True, http_credentials=UI_LOGIN
    )
    page = context.new_page()
    page.goto(server_url)
    page.get_by_role("button", name="Transcribe").wait_for()
    yield page
    context.close()
