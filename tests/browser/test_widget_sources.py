"""The widget and the owner's posts (issue 19): the quiet line while the gateway searches them,
and the posts it found as links under the answer. Against a real gateway reading a real index
in front of the sim (which calls search_posts for a question), and against canned streams for
what no real search sends (URLs that are not http(s), the same post found twice)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect
from posts_support import BLOG, index_folder, write_posts

from browser.widget_page import answer_events, gateway_with, serving_canned_chat

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from gateway_server import GatewayHandle
    from sim_process import SimHandle

    from browser.widget_page import Widget

QUESTION = "What did you write about Tailscale Funnel?"
TAILSCALE_URL = f"{BLOG}/2024/05/tailscale-funnel/"
HOSTILE_TITLE = "<img src=x onerror=window.pwned=1> Markup in titles"
HOSTILE_POST = f"""---
title: "{HOSTILE_TITLE}"
url: /2024/07/markup/
---
# Escaping

Zanzibar quokkas escape every angle bracket before a title reaches a page.
"""


def searched(query: str) -> dict[str, Any]:
    return {"type": "posts.searched", "query": query}


def found(*sources: tuple[str, str]) -> dict[str, Any]:
    return {"type": "posts.sources", "sources": [{"title": t, "url": u} for t, u in sources]}


@pytest.fixture
def rag_gateway(sim: SimHandle, redis_url: str, tmp_path: Path) -> Iterator[GatewayHandle]:
    """A gateway offering the model search_posts (LLMGW_RAG=tools) over an index of the sample
    posts and one whose title holds markup, in front of the quick sim."""
    blog = write_posts(tmp_path / "blog")
    (blog / "markup.md").write_text(HOSTILE_POST)
    index = index_folder(blog, tmp_path / "posts.sqlite3")
    settings = {"rag": "tools", "posts_index": str(index), "posts_share": "file"}
    with gateway_with(sim, redis_url, reasoning_effort="none", **settings) as gateway:
        yield gateway


def test_an_answer_from_a_post_shows_the_search_and_links_the_post(
    rag_gateway: GatewayHandle, widget: Widget
) -> None:
    """A question the posts answer: a quiet line names the search, the answer quotes the post,
    and a link to the post's URL is under the answer, opening in a new tab."""
    widget.open(rag_gateway.url)
    widget.ask(QUESTION)
    widget.wait_for_events("llmgw-completed")
    reply = widget.host.locator(".reply").last
    expect(reply.locator(".searching")).to_have_text(f"Searching the posts for “{QUESTION}”")
    assert f"According to {TAILSCALE_URL}" in widget.last_answer_text()
    assert "Tailscale Funnel exposes one port" in widget.last_answer_text()
    link = reply.locator(".sources a", has_text="Serving a model through Tailscale Funnel")
    expect(link).to_have_attribute("href", TAILSCALE_URL)
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(reply.locator(".sources")).to_contain_text("Sources: ")
    # Under the answer: the element right after it.
    assert reply.locator(".answer + .sources").count() == 1
    (completed,) = widget.events("llmgw-completed")
    assert {"title": "Serving a model through Tailscale Funnel", "url": TAILSCALE_URL} in completed[
        "sources"
    ]
    widget.screenshot("sources")


def test_a_post_whose_title_holds_markup_is_linked_by_its_title_as_text(
    rag_gateway: GatewayHandle, widget: Widget
) -> None:
    """A post titled with an <img onerror> tag: its link shows the tag as text, no element is
    made and no script runs."""
    widget.open(rag_gateway.url)
    widget.ask("Why do the Zanzibar quokkas escape angle brackets?")
    widget.wait_for_events("llmgw-completed")
    link = widget.host.locator(f'.sources a[href="{BLOG}/2024/07/markup/"]')
    expect(link).to_have_text(HOSTILE_TITLE)
    expect(widget.host.locator("img")).to_have_count(0)
    assert widget.page.evaluate("window.pwned") is None


def test_no_search_no_line_and_no_sources(rag_gateway: GatewayHandle, widget: Widget) -> None:
    """A greeting is answered without a search: no searching line, no Sources."""
    widget.open(rag_gateway.url)
    widget.ask("Hello there")
    widget.wait_for_events("llmgw-completed")
    expect(widget.host.locator(".searching")).to_have_count(0)
    expect(widget.host.locator(".sources")).to_have_count(0)
    assert widget.events("llmgw-completed")[0]["sources"] == []


# -- canned streams: the widget's rendering alone ---------------------------------------------


def test_sources_of_several_searches_are_listed_once_each_under_the_answer(widget: Widget) -> None:
    """Two searches (two lines), sources over two events: each URL listed once, in the order
    they came, after the answer's text has ended."""
    events = [
        searched("tailscale funnel"),
        found(("Funnel", "https://blog.example/funnel/"), ("Redis", "https://blog.example/redis/")),
        searched("nginx bearer"),
        found(("Funnel again", "https://blog.example/funnel/"), ("nginx", "http://old.example/n")),
        *answer_events("Funnel and nginx, as the posts say."),
    ]
    with serving_canned_chat(events) as url:
        widget.open(url)
        widget.ask("How is it served?")
        widget.wait_for_events("llmgw-completed")
    reply = widget.host.locator(".reply").last
    expect(reply.locator(".searching")).to_have_text(
        ["Searching the posts for “tailscale funnel”", "Searching the posts for “nginx bearer”"]
    )
    expect(reply.locator(".sources")).to_have_text("Sources: Funnel, Redis, nginx")
    links = reply.locator(".sources a")
    expect(links).to_have_count(3)
    hrefs = [links.nth(i).get_attribute("href") for i in range(3)]
    assert hrefs == [
        "https://blog.example/funnel/",
        "https://blog.example/redis/",
        "http://old.example/n",
    ]
    expect(widget.answers().last).to_have_text("Funnel and nginx, as the posts say.")


def test_only_http_urls_become_links_and_titles_stay_text(widget: Widget) -> None:
    """javascript:, data: and relative URLs are shown as their titles' text, never as links;
    a title with markup is text; a source without a title shows its URL."""
    events = [
        searched("<b>bold</b> query"),
        found(
            ("Click me", "javascript:window.pwned=1"),
            ("Data", "data:text/html,<script>window.pwned=1</script>"),
            ("Relative", "/2024/relative/"),
            ("<img src=x onerror=window.pwned=1>", "https://blog.example/markup/"),
            ("", "https://blog.example/untitled/"),
        ),
        *answer_events("Done."),
    ]
    with serving_canned_chat(events) as url:
        widget.open(url)
        widget.ask("Anything?")
        widget.wait_for_events("llmgw-completed")
    sources = widget.host.locator(".sources")
    expect(sources).to_have_text(
        "Sources: Click me, Data, Relative, <img src=x onerror=window.pwned=1>,"
        " https://blog.example/untitled/"
    )
    hrefs = sources.locator("a").evaluate_all("(links) => links.map((a) => a.href)")
    assert hrefs == ["https://blog.example/markup/", "https://blog.example/untitled/"]
    expect(widget.host.locator(".searching")).to_have_text(
        "Searching the posts for “<b>bold</b> query”"
    )
    expect(widget.host.locator("img, b, script")).to_have_count(0)
    assert widget.page.evaluate("window.pwned") is None


def test_an_answer_that_fails_after_a_search_still_names_what_was_read(widget: Widget) -> None:
    """The stream ends in an error after its sources: the error is shown, and the sources too."""
    events = [
        {"type": "response.created", "response": {"id": "resp_x"}},
        searched("tailscale"),
        found(("Funnel", "https://blog.example/funnel/")),
        {"type": "error", "error": {"code": "idle_timeout", "message": "stalled"}},
    ]
    with serving_canned_chat(events) as url:
        widget.open(url)
        widget.ask("Tailscale?")
        widget.wait_for_events("llmgw-error")
    expect(widget.host.locator(".note.error")).to_have_text(
        "The model stopped sending. Please try again."
    )
    expect(widget.host.locator(".sources a")).to_have_text("Funnel")
