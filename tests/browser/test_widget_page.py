"""How the widget is served and presented: headers, CSP, accessibility, keyboard, the visitor id
it sends, and its light and dark themes."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
from playwright.sync_api import expect
from support import free_port

from browser.widget_page import gateway_with, serving_page

if TYPE_CHECKING:
    from collections.abc import Iterator

    from gateway_server import GatewayHandle
    from playwright.sync_api import ConsoleMessage
    from sim_process import SimHandle

    from browser.widget_page import Widget

THUMBMARK = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def test_script_is_served_with_type_cache_and_validator(gateway: GatewayHandle) -> None:
    """The script has a JavaScript type, a public cache lifetime, and revalidates to a 304."""
    response = httpx.get(f"{gateway.url}/llmgw-chat.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"].startswith("public, max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "customElements.define" in response.text
    etag = response.headers["etag"]
    again = httpx.get(f"{gateway.url}/llmgw-chat.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


def test_demo_page_has_a_strict_policy_and_breaks_none_of_it(
    gateway: GatewayHandle, widget: Widget
) -> None:
    """The demo page forbids inline script and foreign origins, and the widget works under it."""
    response = httpx.get(f"{gateway.url}/")
    policy = response.headers["content-security-policy"]
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    problems: list[str] = []
    widget.page.on("console", lambda message: _note_error(message, problems))
    widget.page.on("pageerror", lambda error: problems.append(str(error)))
    widget.open(gateway.url)
    widget.ask("Hello")
    widget.wait_for_events("llmgw-completed")
    assert problems == []


def _note_error(message: ConsoleMessage, problems: list[str]) -> None:
    # /api/status may not exist (a 404 the widget reads as "ok"); the browser logs it anyway.
    if message.type == "error" and not message.location["url"].endswith("/api/status"):
        problems.append(message.text)


def test_controls_are_labelled_and_announced(paced_gateway: GatewayHandle, widget: Widget) -> None:
    """Box and buttons are named, the conversation is a polite live region, status has a role."""
    widget.open(paced_gateway.url)
    expect(widget.input).to_be_visible()
    expect(widget.send_button).to_be_visible()
    expect(widget.host.locator("[role=status]")).to_have_count(2)
    widget.ask("Hi")
    log = widget.page.get_by_role("log", name="Ask the model")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(log).to_have_attribute("aria-busy", "true")
    expect(widget.stop_button).to_be_visible()
    widget.wait_for_events("llmgw-completed")
    expect(log).to_have_attribute("aria-busy", "false")


def test_keyboard_enter_sends_and_shift_enter_breaks_the_line(
    gateway: GatewayHandle, widget: Widget
) -> None:
    """Shift+Enter adds a line, Enter sends, and the focused box shows a visible outline."""
    widget.open(gateway.url)
    widget.input.focus()
    widget.input.press_sequentially("first line")
    widget.input.press("Shift+Enter")
    widget.input.press_sequentially("second line")
    assert widget.chat_requests == []
    expect(widget.input).to_have_value("first line\nsecond line")
    outline = widget.input.evaluate("(element) => getComputedStyle(element).outlineStyle")
    assert outline == "solid"
    widget.input.press("Enter")
    widget.wait_for_events("llmgw-completed")
    assert widget.request_body(0)["input"] == "first line\nsecond line"
    expect(widget.input).to_have_value("")


def test_generated_thumbmark_is_kept_and_sent(gateway: GatewayHandle, widget: Widget) -> None:
    """Without a thumbmark attribute, one random id is stored per browser and sent every time."""
    widget.open(gateway.url)
    widget.ask("One")
    widget.wait_for_events("llmgw-completed")
    stored = widget.page.evaluate("localStorage.getItem('llmgw-thumbmark')")
    assert THUMBMARK.fullmatch(stored)
    widget.open(gateway.url)  # a new page load: the same browser keeps its id
    widget.ask("Two")
    widget.wait_for_events("llmgw-completed")
    sent = [request.headers["x-thumbmark-id"] for request in widget.chat_requests]
    assert sent == [stored, stored]


def test_thumbmark_attribute_is_sent_when_valid(gateway: GatewayHandle, widget: Widget) -> None:
    """A valid thumbmark attribute is sent as it is; an invalid one is replaced by a stored id."""
    widget.open(gateway.url)
    for asked, attribute in enumerate(("visitor-42:a.b_c", "not valid!"), start=1):
        widget.host.evaluate(
            "(element, value) => element.setAttribute('thumbmark', value)", attribute
        )
        widget.ask(f"Hello as {attribute}")
        # The count asked so far, not len(chat_requests): request events arrive asynchronously.
        widget.wait_for_events("llmgw-completed", asked)
        # A conversation is bound to the browser that began it: a new id starts a new chat.
        widget.host.evaluate("(element) => element.reset()")
    valid, invalid = (request.headers["x-thumbmark-id"] for request in widget.chat_requests)
    assert valid == "visitor-42:a.b_c"
    assert invalid == widget.page.evaluate("localStorage.getItem('llmgw-thumbmark')")
    assert THUMBMARK.fullmatch(invalid)


def _panel_lightness(widget: Widget) -> float:
    """Mean of the panel's background RGB channels, 0 (black) to 255 (white)."""
    color: str = widget.host.evaluate(
        "(host) => getComputedStyle(host.shadowRoot.querySelector('.panel')).backgroundColor"
    )
    channels = [float(value) for value in re.findall(r"[\d.]+", color)[:3]]
    return sum(channels) / 3


def test_theme_follows_the_system_and_the_attribute(gateway: GatewayHandle, widget: Widget) -> None:
    """Dark when the system prefers dark or theme="dark"; theme="light" wins over a dark system."""
    widget.open(gateway.url)
    assert _panel_lightness(widget) > 200
    widget.host.evaluate("(element) => element.setAttribute('theme', 'dark')")
    assert _panel_lightness(widget) < 60
    widget.host.evaluate("(element) => element.removeAttribute('theme')")
    widget.page.emulate_media(color_scheme="dark")
    assert _panel_lightness(widget) < 60
    widget.ask("Do you have a dark side?")
    widget.wait_for_events("llmgw-completed")
    widget.host.locator("details.reasoning summary").click()
    widget.screenshot("dark")
    widget.host.evaluate("(element) => element.setAttribute('theme', 'light')")
    assert _panel_lightness(widget) > 200


def test_custom_properties_theme_the_widget(gateway: GatewayHandle, widget: Widget) -> None:
    """--llmgw-accent, --llmgw-bg and --llmgw-radius set on the element restyle its parts."""
    widget.open(gateway.url)
    widget.host.evaluate(
        """(element) => {
            element.style.setProperty('--llmgw-accent', 'rgb(200, 0, 100)');
            element.style.setProperty('--llmgw-bg', 'rgb(250, 240, 220)');
            element.style.setProperty('--llmgw-radius', '2px');
        }"""
    )
    expect(widget.send_button).to_have_css("background-color", "rgb(200, 0, 100)")
    panel = widget.host.locator(".panel")
    expect(panel).to_have_css("background-color", "rgb(250, 240, 220)")
    expect(panel).to_have_css("border-top-left-radius", "2px")


def test_blog_on_another_origin_embeds_it_with_one_tag(
    sim: SimHandle, redis_url: str, widget: Widget
) -> None:
    """A page on another origin loads the script from the gateway and chats with it through CORS."""
    with running_gateway_for_blog(sim, redis_url) as (gateway, blog):
        widget.open(blog)
        widget.ask("Hello from the blog")
        widget.wait_for_events("llmgw-completed")
    assert widget.chat_requests[0].url == f"{gateway.url}/api/chat"
    assert widget.chat_requests[0].all_headers()["origin"] == blog
    assert widget.last_answer_text().startswith("You said: Hello from the blog")


@contextmanager
def running_gateway_for_blog(sim: SimHandle, redis_url: str) -> Iterator[tuple[GatewayHandle, str]]:
    blog_port = free_port()
    blog = f"http://127.0.0.1:{blog_port}"
    with gateway_with(sim, redis_url, cors_origins=blog) as gateway:
        page = (
            f'<script src="{gateway.url}/llmgw-chat.js" defer></script>'
            f'<llmgw-chat gateway="{gateway.url}/" heading="Ask my blog"></llmgw-chat>'
        )
        with serving_page(page, port=blog_port) as url:
            yield gateway, url
