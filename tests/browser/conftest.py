"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright for Python) against a real server.

Playwright's own browser downloads are not used: the tests launch the system Chromium, which CI installs with
`apt-get install -y chromium`. A missing browser or playwright package fails the tests (never skips them).
"""
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT

CHROMIUM = Path(os.environ.get("SENTI_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}


def screenshots_wanted() -> bool:
    """Screenshots rewrite tracked files: only when SENTI_SCREENSHOTS=1."""
    return os.environ.get("SENTI_SCREENSHOTS") == "1"


@pytest.fixture(scope="package")
def browser():
    """One Chromium for the browser tests; closed after them, since Playwright's sync API keeps an event loop running in
    this thread while it is open (asyncio.run in later tests would fail)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"the browser tests need the `playwright` package ({error}); install requirements/dev "
                    "(make install)", pytrace=False)
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        pytest.fail(f"Chromium is not installed at {CHROMIUM}{f' (found {found}: set SENTI_CHROMIUM)' if found else ''}; "
                    "install it with `apt-get update && apt-get install -y chromium` (CI does)", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class PageWatch:
    """What a page did that it should not: script errors, console errors, requests that leave the server."""

    def __init__(self, base_url: str):
        self.origin = urlsplit(base_url).netloc
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.allow: tuple[str, ...] = ()  # console errors a test expects (an HTTP error it provokes)

    def route(self, route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != self.origin:
            self.foreign.append(url)
            route.abort()
        else:
            route.continue_()

    def check(self) -> None:
        assert not self.foreign, f"the page fetched from outside the server: {self.foreign}"
        errors = [e for e in self.errors if not any(a in e for a in self.allow)]
        assert not errors, f"the page logged errors: {errors}"


@contextmanager
def open_page(browser, base_url: str) -> Iterator:
    """A fresh context and page at the server's `/`, with the model panel loaded; checks the watch on exit."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(20_000)
    watch = PageWatch(base_url)
    page.on("pageerror", lambda error: watch.errors.append(f"pageerror: {error}"))
    page.on("console", lambda message: message.type == "error" and watch.errors.append(f"console: {message.text}"))
    context.route("**/*", watch.route)
    page.goto(base_url + "/")
    page.wait_for_selector("[data-testid=model-name]")
    page.watch = watch
    try:
        yield page
        watch.check()
    finally:
        context.close()
