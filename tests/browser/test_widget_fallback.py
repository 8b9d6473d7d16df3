"""The widget when the home model is out and the hosted fallback answers: the answer streams
as usual, and a note under it says the backup model answered."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from gateway_server import running_gateway
from playwright.sync_api import expect
from sim_process import running_sim
from support import eventually, free_port

from browser.widget_page import QUICK

if TYPE_CHECKING:
    from browser.widget_page import Widget

BACKUP = "Answered by the backup model."


def test_an_answer_from_the_fallback_says_so(redis_url: str, widget: Widget) -> None:
    """The home host is unreachable (nothing listens there): the fallback sim answers, and the
    widget shows the note with the answer, and no error."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    with (
        running_sim(*QUICK) as backup,
        running_gateway(
            upstream_url=nowhere,
            redis_url=redis_url,
            health_interval=0.3,
            fallback_url=backup.url,
            fallback_model="nvidia/nemotron-3-nano",
        ) as gateway,
    ):
        hosts = f"{gateway.url}/readyz"
        assert eventually(lambda: not httpx.get(hosts, timeout=5).json()["hosts"][0]["serving"])
        widget.open(gateway.url)
        widget.ask("Anyone home?")
        widget.wait_for_events("llmgw-completed", timeout=20_000)
        expect(widget.host.locator(".reply .note")).to_have_text(BACKUP)
        assert widget.last_answer_text().startswith("You said: Anyone home?")
        assert backup.stats()["started"] == 1
    assert widget.events("llmgw-error") == []
