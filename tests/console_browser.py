"""Fixtures for the web console's browser tests: a fleet, headless Chromium driven by
Playwright, a page signed in as a given role, and screenshots kept for people to look at.

A test module uses them by importing them (and is listed in ``FLEET_FILES`` of
tests/conftest.py, as it starts a fleet)::

    from tests import console_browser

    browser = console_browser.browser
    console_fleet = console_browser.console_fleet
    console_page = console_browser.console_page
    shots = console_browser.shots

    def test_costs_page(console_page, shots):
        page = console_page("admin")          # signed in, on /console/faxes
        page.goto("/console/admin/costs")
        shots(page, "admin-costs")

Chromium is the system's (``/usr/bin/chromium``, ``scripts/system-deps.sh`` installs
it): Playwright's own browser downloads are never used. Screenshots go to
``artifacts/console/`` at the repository root, or to ``FAXFLEET_CONSOLE_ARTIFACTS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from faxfleet.admin_client import AdminClient
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.sample_group import declare
from tests.conftest import SmtpServer, running_fleet

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
KEYS = {"admin": "admin-key", "acme": "acme-key", "globex": "globex-key"}
"""A role -> the key it signs in with (tenant keys of tests/conftest.py's fleets)."""
MIN_SCREENSHOT_BYTES = 5000
"""Smaller than any real page's screenshot: a blank or broken capture."""


@pytest.fixture(scope="module")
def console_fleet(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer
) -> Iterator[Fleet]:
    """One site with two emulated lines and its cost table, the API (and its console)
    included."""
    with running_fleet(
        tmp_path_factory.mktemp("console"),
        [SiteSpec("paris", 2)],
        {
            "FAXFLEET_SMTP_PORT": str(smtp_server.port),
            "FAXFLEET_ADMIN_KEYS": KEYS["admin"],
            # A call held up by its far end for seconds is still in progress, not silent.
            "FAXFLEET_STUCK_AFTER_SECONDS": "10000",
        },
    ) as fleet:
        # Declared with its cost table, so the calls are priced for the costs report.
        with AdminClient(fleet.api_url, admin_key=KEYS["admin"]) as admin:
            declare(admin, {"paris": 2})
        yield fleet


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-deps.sh (Debian's chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def console_page(browser: Browser, console_fleet: Fleet) -> Iterator[Callable[[str], Page]]:
    """``console_page(role)``: a new browser context signed in as ``role`` (``admin``,
    ``acme``, ``globex``) through the sign-in form, on the fax list. Relative URLs
    (``page.goto("/console/send")``) go to the fleet's API."""
    contexts = []

    def signed_in(role: str) -> Page:
        context = browser.new_context(
            base_url=console_fleet.api_url, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/console/signin")
        page.fill("input[name=api_key]", KEYS[role])
        page.click("button[type=submit]")
        page.wait_for_url("**/console/faxes")
        return page

    yield signed_in
    for context in contexts:
        context.close()


def artifacts_dir() -> Path:
    return Path(os.environ.get("FAXFLEET_CONSOLE_ARTIFACTS") or ROOT / "artifacts" / "console")


@pytest.fixture(scope="session")
def shots() -> Callable[[Page, str], Path]:
    """``shots(page, name)``: a full-page screenshot ``<name>.png`` in the artifacts
    directory (printed once), checked to be a real PNG of some size."""
    where = artifacts_dir()
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {where}")

    def shot(page: Page, name: str) -> Path:
        path = where / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        check_screenshot(path)
        return path

    return shot


def check_screenshot(path: Path) -> None:
    """A real PNG of some size: a rendered page, not a blank one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > MIN_SCREENSHOT_BYTES, f"{path} is only {len(data)} bytes"
