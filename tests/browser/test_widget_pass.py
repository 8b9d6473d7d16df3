"""The widget and visitor passes (issue 16) in a real browser against a real gateway: a pass got
while the visitor writes and sent with each chat, a refused one replaced without the visitor
noticing, "Checking your browser…" only when the check is slow, and an older gateway chatted
with as before."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

from altcha.v1 import ChallengeOptions, create_challenge
from playwright.sync_api import expect
from support import free_port

from app.access.passes import ALGORITHM, issue_pass
from browser.widget_page import gateway_with, serving_page

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, Route
    from sim_process import SimHandle

    from browser.widget_page import Widget

CHECKING = "Checking your browser…"
PASS_KEY = "a-visitor-pass-key-for-the-widget-tests"
STORED_PASS = "llmgw-pass:"  # sessionStorage's key for the page's own gateway
# Records every text the widget's status lines show, however briefly.
STATUS_RECORDER = """(host) => {
    window.statusTexts = [];
    const record = () => {
        for (const line of host.shadowRoot.querySelectorAll(".wait-status, [role=status]")) {
            if (line.textContent) window.statusTexts.push(line.textContent);
        }
    };
    const changes = { subtree: true, childList: true, characterData: true };
    new MutationObserver(record).observe(host.shadowRoot, changes);
}"""


class PassTraffic:
    """The page's requests for challenges and passes, in order."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        page.on("request", self._record)

    def _record(self, request: Request) -> None:
        if "/api/pass" in request.url:
            self.requests.append(request)

    def paths(self) -> list[str]:
        return [request.url.split("/", 3)[3] for request in self.requests]


def visitor_pass(request: Request) -> str | None:
    return request.all_headers().get("x-visitor-pass")


def opened(widget: Widget, url: str) -> PassTraffic:
    traffic = PassTraffic(widget.page)
    widget.open(url)
    widget.host.evaluate(STATUS_RECORDER)
    return traffic


def stored_token(widget: Widget) -> str:
    held = widget.page.evaluate("(key) => sessionStorage.getItem(key)", STORED_PASS)
    token: str = json.loads(held)["token"]
    return token


def status_texts(widget: Widget) -> list[str]:
    texts: list[str] = widget.page.evaluate("window.statusTexts")
    return texts


def test_base_difficulty_gets_a_pass_while_the_visitor_types(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """Focusing the box gets a pass before the first question; every chat carries it, and the
    visitor sees nothing but the answer."""
    with gateway_with(sim, redis_url) as gateway:  # adaptive, at base difficulty
        traffic = opened(widget, gateway.url)
        with widget.page.expect_response("**/api/pass") as granted:
            widget.input.focus()
        token = granted.value.json()["pass"]
        widget.ask("Hello")
        widget.wait_for_events("llmgw-completed")
        widget.ask("And again")
        widget.wait_for_events("llmgw-completed", 2)
    assert traffic.paths() == ["api/pass/challenge", "api/pass"]
    assert [visitor_pass(request) for request in widget.chat_requests] == [token, token]
    assert CHECKING not in status_texts(widget)
    assert widget.last_answer_text().startswith("You said: And again")
    assert widget.events("llmgw-error") == []


def test_the_pass_outlives_a_page_load_and_is_renewed_when_its_chats_run_out(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """The next page of the blog chats with the same pass (sessionStorage); once its chats are
    used, the next chat goes with a fresh one, got beforehand."""
    with gateway_with(sim, redis_url, pass_chats=2) as gateway:
        traffic = opened(widget, gateway.url)
        widget.ask("First")
        widget.wait_for_events("llmgw-completed")
        token = stored_token(widget)
        traffic = opened(widget, gateway.url)  # the next page, in the same tab
        widget.ask("Second")
        widget.wait_for_events("llmgw-completed")
        # Its last chat used, the pass's successor is got before the next question.
        widget.page.wait_for_function(
            "([key, used]) => !(sessionStorage.getItem(key) ?? '').includes(used)",
            arg=[STORED_PASS, token],
        )
        widget.ask("Third")
        widget.wait_for_events("llmgw-completed", 2)
    assert [visitor_pass(request) for request in widget.chat_requests] == [
        token,
        token,
        stored_token(widget),
    ]
    assert traffic.paths() == ["api/pass/challenge", "api/pass"]  # the successor only
    assert stored_token(widget) != token
    assert widget.events("llmgw-error") == []


def test_required_mode_replaces_a_refused_pass_and_sends_the_chat_again(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """A pass from the visitor's previous network (left in sessionStorage) is refused with a
    401; the widget gets a fresh pass and the question is answered, with no error shown."""
    settings = {"pass_mode": "required", "pass_key": PASS_KEY}
    with gateway_with(sim, redis_url, **settings) as gateway:
        stale = issue_pass("198.51.100.0/24", key=PASS_KEY.encode())
        traffic = opened(widget, gateway.url)
        held = {"token": stale, "expiresAt": 4_000_000_000_000, "chatsLeft": 20}
        widget.page.evaluate("([key, held]) => sessionStorage.setItem(key, held)",
                             [STORED_PASS, json.dumps(held)])  # fmt: skip
        with widget.page.expect_response("**/api/chat") as refused:
            widget.ask("Hello from a new network")
        assert refused.value.status == 401
        assert refused.value.json()["code"] == "pass_invalid"
        widget.wait_for_events("llmgw-completed")
    first, again = widget.chat_requests
    assert visitor_pass(first) == stale
    assert visitor_pass(again) not in {None, stale}
    assert traffic.paths() == ["api/pass/challenge", "api/pass"]
    assert widget.last_answer_text().startswith("You said: Hello from a new network")
    expect(widget.host.locator(".question")).to_have_count(1)
    assert widget.events("llmgw-error") == []


def test_required_mode_without_a_pass_gets_the_401_then_a_pass(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """While challenges are lost on the way, the chat goes without a pass; the gateway answers
    401 pass_required, and the widget gets a pass and sends the chat again."""

    def lost_until_a_chat(route: Route) -> None:
        if widget.chat_requests:
            route.continue_()
        else:
            route.abort()

    with gateway_with(sim, redis_url, pass_mode="required") as gateway:
        widget.page.route("**/api/pass/challenge", lost_until_a_chat)
        opened(widget, gateway.url)
        with widget.page.expect_response("**/api/chat") as refused:
            widget.ask("Hello")
        assert refused.value.json()["code"] == "pass_required"
        widget.wait_for_events("llmgw-completed")
    first, again = widget.chat_requests
    assert visitor_pass(first) is None
    assert visitor_pass(again) is not None
    assert widget.last_answer_text().startswith("You said: Hello")
    assert widget.events("llmgw-error") == []


def test_a_slow_check_says_checking_your_browser_then_the_answer(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """A dear challenge (hundreds of thousands of hashes) shows "Checking your browser…" under
    the question, read out by the status region, until the pass comes; then the answer."""
    # The secret number is drawn at random, so even a high step count can be solved at once by
    # luck; a challenge of the gateway's own key with a known, large number is always slow.
    with gateway_with(sim, redis_url, pass_mode="required", pass_key=PASS_KEY) as gateway:
        widget.page.route("**/api/pass/challenge", serve_dear_challenge)
        opened(widget, gateway.url)
        widget.ask("Is anyone there?")
        line = widget.host.locator(".reply .wait-status")
        expect(line).to_have_text(CHECKING, timeout=5_000)
        expect(widget.host.get_by_role("status").filter(has_text=CHECKING)).to_have_count(1)
        widget.screenshot("checking")
        widget.wait_for_events("llmgw-completed", timeout=60_000)
        expect(line).to_have_text("")
    assert widget.last_answer_text().startswith("You said: Is anyone there?")
    assert visitor_pass(widget.chat_requests[0]) is not None
    assert widget.events("llmgw-error") == []


def test_stop_while_checking_gives_the_question_back_to_the_visitor(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """Stop during a slow check ends the wait at once: the turn says so, Send comes back, and no
    chat is sent."""
    with gateway_with(sim, redis_url, pass_mode="required", pass_key=PASS_KEY) as gateway:
        widget.page.route("**/api/pass/challenge", serve_dear_challenge)
        opened(widget, gateway.url)
        widget.ask("Never mind")
        expect(widget.host.locator(".reply .wait-status")).to_have_text(CHECKING)
        widget.stop_button.click()
        expect(widget.host.locator(".reply .note")).to_have_text("Stopped.")
        expect(widget.send_button).to_be_visible()
        expect(widget.host.locator(".reply .wait-status")).to_have_text("")
    assert widget.chat_requests == []


def serve_dear_challenge(route: Route) -> None:
    number = 5_000_000  # a few seconds of this machine's headless Chromium (1.6M hashes/s)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    options = ChallengeOptions(
        ALGORITHM, number, hmac_key=PASS_KEY.encode(), number=number, expires=expires
    )
    route.fulfill(json=create_challenge(options).to_dict())


def test_an_older_gateway_without_passes_is_chatted_with_as_before(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """Challenges answer 404 (passes off, as on a gateway from before them): the widget asks
    once, then chats without a pass."""
    with gateway_with(sim, redis_url, pass_mode="off") as gateway:
        traffic = opened(widget, gateway.url)
        widget.ask("Hello")
        widget.wait_for_events("llmgw-completed")
        widget.ask("Still there?")
        widget.wait_for_events("llmgw-completed", 2)
    assert traffic.paths() == ["api/pass/challenge"]
    assert [visitor_pass(request) for request in widget.chat_requests] == [None, None]
    assert widget.events("llmgw-error") == []


def test_a_blog_that_forbids_workers_still_gets_a_pass(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """On another origin whose CSP allows no worker, the challenge is solved on the page itself,
    and the pass goes through CORS with the chat."""
    blog_port = free_port()
    blog = f"http://127.0.0.1:{blog_port}"
    settings = {"pass_mode": "required", "cors_origins": blog}
    with gateway_with(sim, redis_url, **settings) as gateway:
        page = (
            '<meta http-equiv="Content-Security-Policy" content="worker-src \'none\'">'
            f'<script src="{gateway.url}/llmgw-chat.js" defer></script>'
            f'<llmgw-chat gateway="{gateway.url}" heading="Ask my blog"></llmgw-chat>'
        )
        with serving_page(page, port=blog_port) as url:
            traffic = opened(widget, url)
            widget.ask("Hello from a strict blog")
            widget.wait_for_events("llmgw-completed")
    assert [request.method for request in traffic.requests] == ["GET", "POST"]
    assert visitor_pass(widget.chat_requests[0]) is not None
    assert widget.last_answer_text().startswith("You said: Hello from a strict blog")
