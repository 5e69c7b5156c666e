"""Browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

``playwright install`` cannot download browsers on a closed network, so the system Chromium
(`apt-get install chromium`, in .ci/run's APT_PACKAGES) is used. A failing test leaves a
full-page screenshot in var/screenshots/<test name>.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the test item, so fixtures can see whether the test failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(live_server, request, monkeypatch) -> Iterator[Page]:
    """A fresh Chromium page whose relative URLs go to the live server.

    Playwright's sync API runs an event loop on this thread while it is started; the ORM calls
    the test makes between browser steps are still synchronous, so Django's async guard is
    lifted for the test's duration only, and Playwright is stopped before the database is
    flushed (function scope, set up after ``transactional_db``).
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        messages: list = []
        page.console_messages = messages  # type: ignore[attr-defined]
        page.on("console", lambda message: messages.append(message))
        yield page
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            directory = Path(settings.BASE_DIR, "var", "screenshots")
            directory.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            page.screenshot(path=str(directory / f"{name}.png"), full_page=True)
        browser.close()
        # ORM calls made while Playwright's loop ran got their own connection (another
        # context); close it, or the test database cannot be dropped at the end.
        connections.close_all()
