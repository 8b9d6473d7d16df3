"""The widget while LM Studio loads the model on the first request for it (JIT, docs
`1_developer/0_core/ttl-and-auto-evict.md`): a status line says so until the answer starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from playwright.sync_api import expect
from support import eventually

from browser.widget_page import lmstudio_gateway

if TYPE_CHECKING:
    from browser.widget_page import Widget

WAKING = "Waking the model…"  # the gateway's `llmgw.status` message for state "waking"
LOAD_SECONDS = "3"


def model_state(url: str) -> object:
    return httpx.get(f"{url}/readyz", timeout=10).json()["model"]


def test_waking_model_shows_a_status_then_the_answer(redis_url: str, widget: Widget) -> None:
    """A question to a model not loaded yet shows "Waking the model…" under the pending answer,
    and a screen reader hears it; then the answer comes and the line goes."""
    with lmstudio_gateway(
        redis_url, "--jit", "--load-seconds", LOAD_SECONDS, health_interval=0.3
    ) as (gateway, sim):
        # The gateway says "waking" once its health check has seen the model unloaded.
        assert eventually(lambda: model_state(gateway.url) == "sleeping", timeout=10)
        widget.open(gateway.url)
        widget.ask("Are you awake?")
        line = widget.host.locator(".reply .wait-status")
        expect(line).to_have_text(WAKING)
        expect(widget.host.get_by_role("status").filter(has_text=WAKING)).to_have_count(1)
        widget.screenshot("waking")
        widget.wait_for_events("llmgw-completed", timeout=20_000)
        expect(line).to_have_text("")
        assert widget.last_answer_text().startswith("You said: Are you awake?")
        assert sim.stats()["loads_started"] == 1
    assert widget.events("llmgw-error") == []
