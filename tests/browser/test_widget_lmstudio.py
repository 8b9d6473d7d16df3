"""The widget meets what a real LM Studio sends (issue 18), each behaviour played by the sim's own
flag: reasoning sent whole, answers cut at their length limit, a conversation grown past the
context or forgotten by the model, and a model server that cannot or will not answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from fault_servers import answering_server
from gateway_server import running_gateway
from playwright.sync_api import expect

from browser.widget_page import lmstudio_gateway

if TYPE_CHECKING:
    from browser.widget_page import Widget

# The sim's eight reasoning tokens (conftest's QUICK): the same words however they are sent.
REASONING_WORDS = "Let me think about what was asked and"
CUT_SHORT = "Cut short: the answer reached its length limit."
NO_ROOM = "The answer ran out of room while thinking."
CONTEXT_FULL = "This conversation has grown too long for the model to go on."
EXPIRED = "The model no longer remembers this conversation."
INCOMPATIBLE = (
    "The chat's model server can't answer in the way this chat needs. Please try again later."
)
REJECTED = "The model couldn't take this question. Try asking it another way."
# Below the sim's natural 8 + 32 tokens, so every answer is cut.
CAPPED = {"max_output_tokens": 16}
# The first exchange fits and the follow-up does not (the sim counts four characters a token and
# keeps question + answer): the input alone overflows 20 tokens; 60 leave the follow-up room to
# start and fill the context mid-answer (lmstudio-bug-tracker #237, #2322, #1251).
OVERFLOWS = {
    "400": ("--context-length", "20", "--overflow", "400"),
    "200": ("--context-length", "20", "--overflow", "200"),
    "mid-generation": ("--context-length", "60", "--overflow", "mid-generation"),
}


@pytest.mark.parametrize("sent", ["whole", "piecewise"])
def test_reasoning_reaches_the_block_once(sent: str, redis_url: str, widget: Widget) -> None:
    """Reasoning sent as one `.done` event with no deltas shows in the reasoning block; reasoning
    streamed as deltas is not doubled by the `.done` that follows them."""
    flags = ("--reasoning-done-only",) if sent == "whole" else ()
    with lmstudio_gateway(redis_url, *flags) as (gateway, _):
        widget.open(gateway.url)
        widget.ask("Why is the sky blue?")
        widget.wait_for_events("llmgw-completed")
        reasoning = widget.host.locator("details.reasoning")
        expect(reasoning).to_be_visible()
        reasoning.locator("summary").click()
        expect(reasoning.locator(".reasoning-text")).to_have_text(REASONING_WORDS)
        assert widget.last_answer_text().startswith("You said: Why is the sky blue?")


def test_cut_short_answer_is_marked_and_continues(redis_url: str, widget: Widget) -> None:
    """An answer that reached its length limit stays on screen marked "cut short", and Continue
    asks the model to go on in the same conversation."""
    with lmstudio_gateway(redis_url, "--incomplete-at-limit", **CAPPED) as (gateway, _):
        widget.open(gateway.url)
        widget.ask("Tell me everything about Redis")
        widget.wait_for_events("llmgw-completed")
        expect(widget.host.locator(".note")).to_have_text(CUT_SHORT)
        assert widget.last_answer_text().startswith("You said: Tell me everything")
        widget.screenshot("cut-short")
        widget.page.get_by_role("button", name="Continue").click()
        widget.wait_for_events("llmgw-completed", 2)
        expect(widget.host.locator(".question")).to_have_text(
            ["Tell me everything about Redis", "Continue."]
        )
        expect(widget.page.get_by_role("button", name="Continue")).to_have_count(1)
    first, second = widget.events("llmgw-completed")
    assert first["incomplete"] is True
    assert widget.request_body(1) == {
        "input": "Continue.",
        "previous_response_id": first["responseId"],
    }
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"]  # it saw the first
    assert widget.events("llmgw-error") == []


def test_reasoning_that_eats_the_budget_says_so(redis_url: str, widget: Widget) -> None:
    """A model that spent the whole length limit thinking leaves a reply that says so in words,
    not a blank one, and it can still be continued."""
    flags = ("--incomplete-at-limit", "--reasoning-eats-budget")
    with lmstudio_gateway(redis_url, *flags, **CAPPED) as (gateway, _):
        widget.open(gateway.url)
        widget.ask("Prove the Riemann hypothesis")
        widget.wait_for_events("llmgw-completed")
        reply = widget.host.locator(".reply")
        expect(reply.locator(".note")).to_have_text(NO_ROOM)
        expect(reply.locator(".answer")).to_be_hidden()
        expect(reply.locator("details.reasoning")).to_be_visible()
        expect(widget.page.get_by_role("button", name="Continue")).to_be_visible()
        widget.screenshot("no-room")
    assert widget.events("llmgw-completed")[0]["incomplete"] is True
    assert widget.last_answer_text() == ""


@pytest.mark.parametrize("form", list(OVERFLOWS))
def test_full_context_restarts_in_one_click(form: str, redis_url: str, widget: Widget) -> None:
    """A conversation grown too long for the model says so with a "Start a new conversation"
    button; one click forgets it, clears the log and gets the last question answered afresh."""
    with lmstudio_gateway(redis_url, *OVERFLOWS[form]) as (gateway, _):
        widget.open(gateway.url)
        widget.ask("Tell me about Redis")
        widget.wait_for_events("llmgw-completed")
        widget.ask("And nginx?")
        widget.wait_for_events("llmgw-error")
        expect(widget.host.locator(".note.error")).to_have_text(CONTEXT_FULL)
        if form == "400":
            widget.screenshot("context-full")
        widget.page.get_by_role("button", name="Start a new conversation").click()
        widget.wait_for_events("llmgw-completed", 2)
        expect(widget.host.locator(".question")).to_have_text(["And nginx?"])
        expect(widget.page.get_by_role("button", name="Start a new conversation")).to_have_count(0)
        assert widget.last_answer_text().startswith("You said: And nginx?")
    assert widget.events("llmgw-error")[0]["code"] == "context_full"
    assert widget.request_body(2) == {"input": "And nginx?"}  # no previous_response_id


def test_forgotten_conversation_restarts_in_one_click(redis_url: str, widget: Widget) -> None:
    """When the model no longer keeps the conversation (LM Studio restarted) and the gateway
    keeps no transcript of it (LLMGW_TRANSCRIPTS off), the widget says so and one click asks
    the last question again in a new conversation."""
    with lmstudio_gateway(redis_url, transcripts=False) as (gateway, sim):
        widget.open(gateway.url)
        widget.ask("Tell me about Redis")
        widget.wait_for_events("llmgw-completed")
        sim.restart()  # its stored responses are gone with it
        widget.ask("And nginx?")
        widget.wait_for_events("llmgw-error")
        expect(widget.host.locator(".note.error")).to_have_text(EXPIRED)
        widget.page.get_by_role("button", name="Start a new conversation").click()
        widget.wait_for_events("llmgw-completed", 2)
        expect(widget.host.locator(".question")).to_have_text(["And nginx?"])
    assert widget.events("llmgw-error")[0]["code"] == "conversation_expired"
    assert widget.request_body(2) == {"input": "And nginx?"}


def test_too_old_a_model_server_is_said_plainly(redis_url: str, widget: Widget) -> None:
    """LM Studio before 0.3.29 (no /v1/responses: an unknown path's 200, #618) is said in plain
    words, with no restart offered: a new conversation would not help."""
    flags = ("--no-responses-api", "--unknown-path-200")
    with lmstudio_gateway(redis_url, *flags) as (gateway, _):
        widget.open(gateway.url)
        widget.ask("Hello?")
        widget.wait_for_events("llmgw-error")
        expect(widget.host.locator(".note.error")).to_have_text(INCOMPATIBLE)
    assert widget.events("llmgw-error")[0]["code"] == "upstream_incompatible"
    expect(widget.page.get_by_role("button", name="Start a new conversation")).to_have_count(0)


def test_refused_question_is_said_plainly(redis_url: str, widget: Widget) -> None:
    """A model server refusing the request itself (a 4xx that is no overflow) is said in plain
    words, not as the server's status code."""
    refusal = b'{"error": {"message": "Invalid request parameters"}}'
    with (
        answering_server(422, {"Content-Type": "application/json"}, refusal) as upstream,
        running_gateway(upstream_url=upstream, redis_url=redis_url) as gateway,
    ):
        widget.open(gateway.url)
        widget.ask("Hello?")
        widget.wait_for_events("llmgw-error")
        expect(widget.host.locator(".note.error")).to_have_text(REJECTED)
    assert widget.events("llmgw-error")[0]["code"] == "upstream_rejected"
