"""The widget when the gateway says no: rate limits with a countdown, a busy or down model, and
no model loaded; each time the visitor's text is kept and the box comes back by itself."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from browser.widget_page import gateway_with

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_server import GatewayHandle
    from playwright.sync_api import Route
    from sim_process import SimHandle

    from browser.widget_page import Widget

LIMITS = {
    "visitor": ({"visitor_limit": 1}, "You've sent a lot of messages."),
    "global": ({"global_limit": 1}, "Everyone is chatting right now."),
    # The first answer (4 + 1,024 tokens reserved, 44 used) leaves too little for the follow-up
    # (4 + 1,024 + the 44 on record), which alone would fit.
    "tokens": ({"visitor_token_limit": 1_100}, "Long messages have used up the chat's budget"),
}


@pytest.mark.parametrize("whose", list(LIMITS))
def test_rate_limit_counts_down_then_gives_the_input_back(
    whose: str, sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """A 429 says whose limit it was and counts down from Retry-After with the box disabled; then
    the box comes back, focused, with the refused question still in it."""
    settings, message = LIMITS[whose]
    with gateway_with(sim, redis_url, window_seconds=3, **settings) as gateway:
        widget.open(gateway.url)
        widget.ask("First question")
        widget.wait_for_events("llmgw-completed")
        widget.ask("Second question")
        expect(widget.notice).to_contain_text(message)
        expect(widget.input).to_be_disabled()
        expect(widget.input).to_have_value("Second question")
        if whose != "visitor":
            return  # the same path as the visitor's from here on
        widget.screenshot("rate-limited")
        counts = _sample_countdown(widget)
        expect(widget.input).to_be_enabled(timeout=5_000)
    assert len(set(counts)) >= 2, counts  # a live countdown, not a fixed text
    assert counts == sorted(counts, reverse=True)
    expect(widget.notice).to_be_hidden()
    expect(widget.input).to_have_value("Second question")
    expect(widget.input).to_be_focused()
    expect(widget.host.locator(".question")).to_have_count(1)  # the refused one was taken back


def _sample_countdown(widget: Widget) -> list[int]:
    counts: list[int] = []
    while widget.input.is_disabled():
        match = re.search(r"(\d+) s", widget.countdown.text_content() or "")
        if match:
            counts.append(int(match.group(1)))
        time.sleep(0.2)
    return counts


STATES = {
    "busy": "The model is busy answering other visitors right now.",
    "down": "The chat is resting at the moment",
}


@pytest.mark.parametrize("state", list(STATES))
def test_status_busy_or_down_holds_the_question(
    state: str, gateway: GatewayHandle, sim: SimHandle, widget: Widget
) -> None:
    """When /api/status says busy or down, nothing is sent, the widget says when to try again and
    asks again then; a status it cannot read (404, network error) counts as ok."""
    said = {"state": state, "retry_after": 1}
    widget.page.route("**/api/status", lambda route: route.fulfill(json=said))
    widget.open(gateway.url)
    widget.ask("Is anyone there?")
    expect(widget.notice).to_contain_text(STATES[state])
    expect(widget.countdown).to_have_text(re.compile(r"Try again in 1 s"))
    expect(widget.send_button).to_be_disabled()
    expect(widget.input).to_have_value("Is anyone there?")
    if state == "busy":
        widget.screenshot("busy")
    widget.page.unroute("**/api/status")
    widget.page.route("**/api/status", _unreadable_status(state))
    expect(widget.notice).to_be_hidden(timeout=5_000)
    expect(widget.send_button).to_be_enabled()
    assert widget.chat_requests == []
    assert sim.stats()["started"] == 0


def _unreadable_status(state: str) -> Callable[[Route], None]:
    """A status endpoint that is not there yet (404), or not reachable at all."""
    if state == "busy":
        return lambda route: route.fulfill(status=404, json={"error": "not found"})
    return lambda route: route.abort("connectionrefused")


def test_no_model_loaded_says_when_to_try_again(
    gateway: GatewayHandle, sim: SimHandle, widget: Widget
) -> None:
    """A 503 from the gateway (no model loaded) is said kindly, with its Retry-After countdown."""
    sim.set_fault("no_model")
    widget.open(gateway.url)
    widget.ask("Hello?")
    expect(widget.notice).to_contain_text("The chat can't take new questions right now.")
    expect(widget.countdown).to_have_text(re.compile(r"Try again in (30|29) s"))
    expect(widget.send_button).to_be_disabled()
    expect(widget.input).to_be_enabled()  # the visitor may keep writing meanwhile
    expect(widget.input).to_have_value("Hello?")
    assert widget.events("llmgw-error")[0]["code"] == "model_not_loaded"
    widget.screenshot("unavailable")
