"""The `<llmgw-chat>` element as a test sees it, and a gateway with chosen settings."""

from __future__ import annotations

import json
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway_server import running_gateway
from sim_process import running_sim
from support import serving

if TYPE_CHECKING:
    from collections.abc import Iterator

    from gateway_server import GatewayHandle
    from playwright.sync_api import Locator, Page, Request
    from sim_process import SimHandle

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WIDGET_SCRIPT = Path(__file__).resolve().parents[2] / "app" / "server" / "static" / "llmgw-chat.js"
CANNED_PAGE = (
    '<!doctype html><meta charset="utf-8"><title>canned</title>'
    '<script src="/llmgw-chat.js" defer></script><llmgw-chat></llmgw-chat>'
)
# Answers in a few milliseconds, for tests about what happens around an answer.
QUICK = (
    "--slots",
    "8",
    "--decode-rate",
    "3000",
    "--output-tokens",
    "32",
    "--reasoning-tokens",
    "8",
)


class Widget:
    """The `<llmgw-chat>` element of a page, driven the way a visitor drives it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.host = page.locator("llmgw-chat")
        self.input = page.get_by_role("textbox", name="Your message")
        self.send_button = page.get_by_role("button", name="Send")
        self.stop_button = page.get_by_role("button", name="Stop")
        self.notice = self.host.locator(".notice")
        self.countdown = self.host.locator(".countdown")
        self.chat_requests: list[Request] = []
        page.on("request", self._record)

    def _record(self, request: Request) -> None:
        if request.url.endswith("/api/chat") and request.method == "POST":
            self.chat_requests.append(request)

    def open(self, url: str) -> Widget:
        """Load the demo page and wait for the element to be defined."""
        self.page.goto(url + "/")
        self.page.wait_for_function("() => customElements.get('llmgw-chat') !== undefined")
        return self

    def ask(self, text: str) -> None:
        """Type a question and press Enter."""
        self.input.fill(text)
        self.input.press("Enter")

    def answers(self) -> Locator:
        return self.host.locator(".answer")

    def last_answer_text(self) -> str:
        return self.answers().last.text_content() or ""

    def wait_for_answer(self, chars: int) -> None:
        """Wait, checking every frame, until the last answer shows at least this many characters."""
        self.page.wait_for_function(
            """([host, chars]) => {
                const answers = host.shadowRoot.querySelectorAll(".answer");
                const last = answers[answers.length - 1];
                return last !== undefined && last.textContent.length >= chars;
            }""",
            arg=[self.host.element_handle(), chars],
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        """The detail of every widget DOM event of this name so far."""
        events: list[dict[str, Any]] = self.page.evaluate("window.llmgwEvents")
        return [event for event in events if event["name"] == name]

    def wait_for_events(self, name: str, count: int = 1, timeout: float = 10_000) -> None:
        """Wait until the widget has dispatched `count` events of this name."""
        # A function, not an expression: the demo page's CSP forbids eval'd strings.
        self.page.wait_for_function(
            "([name, count]) => window.llmgwEvents.filter((e) => e.name === name).length >= count",
            arg=[name, count],
            timeout=timeout,
        )

    def request_body(self, index: int) -> dict[str, Any]:
        """The JSON body of the index-th POST /api/chat the page made."""
        body: dict[str, Any] = json.loads(self.chat_requests[index].post_data or "{}")
        return body

    def screenshot(self, name: str) -> Path:
        """Save the page as test-artifacts/widget-<name>.png."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"widget-{name}.png"
        self.page.screenshot(path=path)
        return path


@contextmanager
def gateway_with(sim: SimHandle, redis_url: str, **settings: object) -> Iterator[GatewayHandle]:
    """A gateway in front of the sim, with these setting overrides."""
    with running_gateway(upstream_url=sim.url, redis_url=redis_url, **settings) as handle:
        yield handle


@contextmanager
def lmstudio_gateway(
    redis_url: str, *sim_flags: str, **settings: object
) -> Iterator[tuple[GatewayHandle, SimHandle]]:
    """A quick sim playing these LM Studio behaviours (`python -m sim --help`), and a gateway
    with these settings in front of it."""
    with (
        running_sim(*QUICK, *sim_flags) as sim,
        gateway_with(sim, redis_url, **settings) as gateway,
    ):
        yield gateway, sim


@contextmanager
def serving_page(html: str, port: int = 0) -> Iterator[str]:
    """Serve one HTML page on a loopback port of its own: another origin than the gateway's."""
    body = html.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    with serving(Page, port) as url:
        yield url


def sse(event: dict[str, Any]) -> str:
    """One Server-Sent Event, named by its type as the gateway names them."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


def answer_events(text: str, response_id: str = "resp_canned") -> list[dict[str, Any]]:
    """The events of a short answer: created, the text in two deltas, done, completed."""
    half = len(text) // 2
    created = {"type": "response.created", "response": {"id": response_id}}
    deltas = [
        {"type": "response.output_text.delta", "item_id": "msg", "delta": piece}
        for piece in (text[:half], text[half:])
    ]
    done = {"type": "response.output_text.done", "item_id": "msg", "text": text}
    completed = {"type": "response.completed", "response": {"id": response_id, "usage": None}}
    return [created, *deltas, done, completed]


@contextmanager
def serving_canned_chat(events: list[dict[str, Any]]) -> Iterator[str]:
    """A page with the widget, whose POST /api/chat answers these events as one SSE stream:
    the widget's rendering without a gateway or a model. No status or pass endpoints (404:
    the widget chats without them, as with an older gateway)."""
    stream = "".join(sse(event) for event in events).encode()
    script = WIDGET_SCRIPT.read_bytes()

    class Canned(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/":
                self._send(200, "text/html; charset=utf-8", CANNED_PAGE.encode())
            elif self.path == "/llmgw-chat.js":
                self._send(200, "text/javascript; charset=utf-8", script)
            else:
                self._send(404, "application/json", b'{"error": "not found"}')

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/api/chat":
                self._send(200, "text/event-stream", stream)
            else:
                self._send(404, "application/json", b'{"error": "not found"}')

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    with serving(Canned) as url:
        yield url
