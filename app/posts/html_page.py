"""An HTML post as blocks, by selectolax's HTML5 parser (Lexbor) and CSS selectors, not
patterns over the markup. The post's body is the page's first match of the configured
selector, else its <article>, its <main>, its [role=main], its <body>; scripts, navigation,
forms, asides and footers are dropped. Each run of text becomes a block of its nearest block
element (a heading, a paragraph, a list item, a cell, code as written). Title, URL and date
come from the page's own metadata (Open Graph, canonical link, published time)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from selectolax.lexbor import LexborHTMLParser

from app.posts.records import Block, Page

if TYPE_CHECKING:
    from selectolax.lexbor import LexborNode

BODIES = ("article", "main", "[role=main]")
DROPPED = (
    "script, style, noscript, template, nav, aside, footer, form, button, svg, iframe, canvas,"
    " object, select, textarea, dialog, [hidden], [aria-hidden=true]"
)
HEADINGS = {f"h{level}": level for level in range(1, 7)}
BLOCKS = frozenset(
    {*HEADINGS, "p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption", "caption",
     "div", "section", "article", "main", "body", "header", "details", "summary", "figure"}
)  # fmt: skip
TITLES = ('meta[property="og:title"]', 'meta[name="twitter:title"]')
DATES = (
    'meta[property="article:published_time"]',
    'meta[itemprop="datePublished"]',
    'meta[name="date"]',
    'meta[name="dcterms.date"]',
)


def read_html(html: str, *, selector: str | None = None) -> Page:
    """The page's post: its blocks, title, canonical URL and date, where the page has them."""
    page = LexborHTMLParser(html)
    body = _body(page, selector)
    if body is None:
        return Page([])
    for node in body.css(DROPPED if body.tag != "body" else f"{DROPPED}, header"):
        node.decompose()
    blocks = _blocks(body)
    first_heading = next((block.text for block in blocks if block.level == 1), None)
    title = _content(page, TITLES) or first_heading or _node_text(page.css_first("head title"))
    return Page(blocks, title=title, url=_url(page), date=_date(page, body))


def fragment_text(html: str) -> str:
    """The words of an HTML fragment, in one line."""
    body = LexborHTMLParser(html).body
    return " ".join(body.text(separator=" ").split()) if body is not None else ""


def _body(page: LexborHTMLParser, selector: str | None) -> LexborNode | None:
    for css in (selector, *BODIES) if selector else BODIES:
        if (node := page.css_first(css)) is not None:
            return node
    return page.body


def _blocks(body: LexborNode) -> list[Block]:
    """Each run of text under one block element, in the page's order."""
    blocks: list[Block] = []
    owner: LexborNode | None = None
    words: list[str] = []
    for node in body.traverse(include_text=True):
        if node.tag == "br":
            words.append("\n")
        if node.tag != "-text":
            continue
        block = _block_of(node)
        if block != owner and words:  # selectolax's nodes compare by the node they wrap
            blocks.append(_block(owner, words))
            words = []
        owner = block
        words.append(node.text(deep=False))
    if words:
        blocks.append(_block(owner, words))
    return [block for block in blocks if block.text]


def _block_of(node: LexborNode) -> LexborNode | None:
    parent = node.parent
    while parent is not None and parent.tag not in BLOCKS:
        parent = parent.parent
    return parent


def _block(owner: LexborNode | None, words: list[str]) -> Block:
    text = "".join(words)
    tag = owner.tag if owner is not None else ""
    if tag == "pre" or _inside(owner, "pre"):
        return Block(text.strip("\n").rstrip())
    return Block(" ".join(text.split()), HEADINGS.get(tag or "", 0))


def _inside(node: LexborNode | None, tag: str) -> bool:
    while node is not None:
        if node.tag == tag:
            return True
        node = node.parent
    return False


def _content(page: LexborHTMLParser, selectors: tuple[str, ...]) -> str | None:
    for css in selectors:
        node = page.css_first(css)
        if node is not None and (value := " ".join((node.attributes.get("content") or "").split())):
            return value
    return None


def _node_text(node: LexborNode | None) -> str | None:
    return (" ".join(node.text().split()) or None) if node is not None else None


def _url(page: LexborHTMLParser) -> str | None:
    link = page.css_first('link[rel="canonical"]')
    href = (link.attributes.get("href") or "").strip() if link is not None else ""
    return href or _content(page, ('meta[property="og:url"]',))


def _date(page: LexborHTMLParser, body: LexborNode) -> str | None:
    time = body.css_first("time[datetime]")
    found = _content(page, DATES) or (time.attributes.get("datetime") if time else None)
    return iso_date(found)


def iso_date(text: str | None) -> str | None:
    """A date or time as ISO 8601 (a time keeps its offset), or None when it is not one."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.time() == dt.time() and moment.tzinfo is None and len(text.strip()) <= 10:
        return moment.date().isoformat()
    return moment.isoformat()
