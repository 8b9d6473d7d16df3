"""The widget in a real browser against a real gateway and the simulated LM Studio: streaming,
follow-ups, stopping, and the model's text kept as text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect
from support import eventually

from browser.widget_page import gateway_with

if TYPE_CHECKING:
    from gateway_server import GatewayHandle
    from sim_process import SimHandle

    from browser.widget_page import Widget


# Samples the last answer's length every 15 ms in the page itself, immune to test-side delays.
LENGTH_SAMPLER = """(host) => {
    window.answerLengths = [];
    setInterval(() => {
        const answers = host.shadowRoot.querySelectorAll(".answer");
        const last = answers[answers.length - 1];
        window.answerLengths.push(last ? last.textContent.length : 0);
    }, 15);
}"""


def test_answer_renders_piece_by_piece(paced_gateway: GatewayHandle, widget: Widget) -> None:
    """The answer grows on screen through many lengths as it streams; reasoning goes into a
    closed <details> that opens to show it."""
    widget.open(paced_gateway.url)
    widget.screenshot("idle")
    widget.host.evaluate(LENGTH_SAMPLER)
    widget.ask("How does the gateway protect the model?")
    widget.wait_for_answer(30)
    widget.screenshot("streaming")
    widget.wait_for_events("llmgw-completed")
    lengths: list[int] = widget.page.evaluate("window.answerLengths")
    final = len(widget.last_answer_text())
    partial = {length for length in lengths if 0 < length < final}
    assert len(partial) >= 5, lengths
    assert lengths == sorted(lengths)  # text is only ever appended
    assert widget.last_answer_text().startswith("You said: How does the gateway protect")
    reasoning = widget.host.locator("details.reasoning")
    expect(reasoning).to_be_visible()
    expect(reasoning).not_to_have_attribute("open", "")
    reasoning.locator("summary").click()
    expect(reasoning.locator(".reasoning-text")).to_contain_text("Let me think")
    widget.screenshot("answered")


def test_follow_up_continues_the_conversation(
    gateway: GatewayHandle, sim: SimHandle, widget: Widget
) -> None:
    """The second question carries the first answer's id, and the model sees the longer context."""
    widget.open(gateway.url)
    widget.ask("Tell me about Redis")
    widget.wait_for_events("llmgw-completed")
    widget.ask("And nginx?")
    widget.wait_for_events("llmgw-completed", 2)
    first, second = widget.events("llmgw-completed")
    assert "previous_response_id" not in widget.request_body(0)
    assert widget.request_body(1)["previous_response_id"] == first["responseId"]
    assert second["responseId"] != first["responseId"]
    # The follow-up's input holds the first exchange: its question and its answer.
    first_answer = first["usage"]["output_tokens"] - _reasoning_tokens(first["usage"])
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"] + first_answer
    expect(widget.host.locator(".question")).to_have_count(2)


@pytest.mark.parametrize("how", ["button", "escape"])
def test_stop_cancels_the_generation(
    how: str, paced_gateway: GatewayHandle, paced: SimHandle, widget: Widget
) -> None:
    """Stop (button or Escape) aborts the stream, the model stops decoding, and Send comes back."""
    paced.set_fault("slow")  # several seconds an answer: certainly still decoding when stopped
    widget.open(paced_gateway.url)
    widget.ask("Write a long story")
    expect(widget.host.locator("details.reasoning")).to_be_visible()
    if how == "button":
        widget.stop_button.click()
    else:
        widget.input.press("Escape")
    assert eventually(lambda: paced.stats()["cancelled"] == 1)
    expect(widget.host.locator(".note")).to_have_text("Stopped.")
    expect(widget.send_button).to_be_visible()
    expect(widget.stop_button).to_be_hidden()
    assert paced.stats()["completed"] == 0
    assert widget.events("llmgw-completed") == []


def test_model_text_is_never_html(gateway: GatewayHandle, widget: Widget) -> None:
    """Markup in the model's answer is shown as text: no element is created, no script runs."""
    widget.open(gateway.url)
    widget.ask("<img src=x onerror=window.pwned=1>")
    widget.wait_for_events("llmgw-completed")
    assert "<img src=x onerror=window.pwned=1>" in widget.last_answer_text()
    expect(widget.host.locator("img")).to_have_count(0)
    assert widget.page.evaluate("window.pwned") is None


def test_stream_error_event_is_shown(sim: SimHandle, redis_url: str, widget: Widget) -> None:
    """An SSE error event (the model stalls mid-answer) ends the turn with its message."""
    with gateway_with(sim, redis_url, idle_timeout=0.5) as gateway:
        widget.open(gateway.url)
        sim.set_fault("stall")
        widget.ask("Are you there?")
        widget.wait_for_events("llmgw-error")
        expect(widget.host.locator(".note.error")).to_have_text(
            "The model stopped sending. Please try again."
        )
        widget.screenshot("stream-error")
    assert widget.events("llmgw-error")[0]["code"] == "idle_timeout"
    expect(widget.send_button).to_be_enabled()


def _reasoning_tokens(usage: dict[str, Any]) -> int:
    tokens: int = usage.get("output_tokens_details", {}).get("reasoning_tokens", 0)
    return tokens
