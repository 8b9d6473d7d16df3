"""Fixtures for the widget's browser tests: Debian's headless Chromium driven by Playwright, a
paced simulated LM Studio, and a real gateway in front of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sim_process import SimHandle, running_sim
from support import require_binary

from browser.widget_page import QUICK, Widget, gateway_with

if TYPE_CHECKING:
    from collections.abc import Iterator

    from gateway_server import GatewayHandle
    from playwright.sync_api import Browser, Page

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Under a second an answer, yet long enough to watch it grow; slowed tenfold to stop it halfway.
PACED = ("--slots", "8", "--decode-rate", "60", "--output-tokens", "32", "--reasoning-tokens", "8")
# Collects the widget's DOM events, so that a test can wait for an answer to finish.
EVENT_RECORDER = """
window.llmgwEvents = [];
for (const name of ["llmgw-sent", "llmgw-completed", "llmgw-error"]) {
  document.addEventListener(name, (event) => window.llmgwEvents.push({name, ...event.detail}));
}
"""


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the browser tests: launching it costs about a second."""
    # Not session-wide: Playwright's sync API keeps an event loop running in this thread until
    # it stops, and the test folders after this one call asyncio.run().
    executable = require_binary("chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def paced_sim() -> Iterator[SimHandle]:
    """A sim decoding at a small model's pace, shared by the run; `paced` cleans it per test."""
    with running_sim(*PACED) as handle:
        yield handle


@pytest.fixture(scope="package")
def quick_sim() -> Iterator[SimHandle]:
    """A sim that answers at once, shared by the run; `sim` cleans it per test."""
    with running_sim(*QUICK) as handle:
        yield handle


@pytest.fixture
def sim(quick_sim: SimHandle) -> SimHandle:
    """The quick sim, healthy and with zeroed counters."""
    return quick_sim.healthy()


@pytest.fixture
def paced(paced_sim: SimHandle) -> SimHandle:
    """The paced sim, healthy and with zeroed counters."""
    return paced_sim.healthy()


@pytest.fixture
def gateway(sim: SimHandle, redis_url: str) -> Iterator[GatewayHandle]:
    """A gateway with default limits in front of the quick sim, on a clean Redis."""
    with gateway_with(sim, redis_url) as handle:
        yield handle


@pytest.fixture
def paced_gateway(paced: SimHandle, redis_url: str) -> Iterator[GatewayHandle]:
    """A gateway with default limits in front of the paced sim, on a clean Redis."""
    with gateway_with(paced, redis_url) as handle:
        yield handle


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page with its own storage, recording the widget's DOM events."""
    context = browser.new_context(viewport={"width": 820, "height": 760})
    context.set_default_timeout(10_000)
    context.add_init_script(EVENT_RECORDER)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def widget(page: Page) -> Widget:
    """The demo page's widget, not opened yet."""
    return Widget(page)
