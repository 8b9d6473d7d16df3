"""A Markdown post as blocks: CommonMark with tables (markdown-it-py), its YAML front matter
(title, url or permalink, date, draft) read by PyYAML. Inline markup is dropped for its text:
a link's words, an image's alt text, code as written."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import yaml  # type: ignore[import-untyped]
from markdown_it import MarkdownIt
from mdit_py_plugins.front_matter import front_matter_plugin

from app.posts.html_page import fragment_text
from app.posts.records import Block, Page, PostError

if TYPE_CHECKING:
    from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark").enable("table").use(front_matter_plugin)
_CODE = frozenset({"fence", "code_block"})


def read_markdown(text: str) -> Page:
    """The post's blocks and what its front matter says (a draft is marked as one)."""
    meta: dict[str, Any] = {}
    blocks: list[Block] = []
    level = 0
    row: list[str] | None = None
    for token in _PARSER.parse(text):
        if token.type == "front_matter":
            meta = _front_matter(token.content)
        elif token.type in ("heading_open", "heading_close"):
            level = int(token.tag[1:]) if token.type == "heading_open" else 0
        elif token.type in ("tr_open", "tr_close"):
            if row:
                blocks.append(Block(" | ".join(row)))
            row = [] if token.type == "tr_open" else None
        elif token.type == "inline" and (words := _inline_text(token)):
            if row is not None:
                row.append(words)
            else:
                blocks.append(Block(words, level))
        elif token.type in _CODE and token.content.strip():
            blocks.append(Block(token.content.rstrip()))
        elif token.type == "html_block" and (words := fragment_text(token.content)):
            blocks.append(Block(words))
    return _page(blocks, meta)


def _page(blocks: list[Block], meta: dict[str, Any]) -> Page:
    url = meta.get("url") or meta.get("permalink")
    draft = meta.get("draft") is True or meta.get("published") is False
    return Page(
        blocks,
        title=_text(meta.get("title")),
        url=_text(url),
        date=_date(meta.get("date")),
        draft=draft,
    )


def _front_matter(content: str) -> dict[str, Any]:
    try:
        meta = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise PostError(f"its front matter is not YAML ({type(exc).__name__})") from None
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise PostError("its front matter is not a YAML mapping (key: value lines)")
    return meta


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


def _text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = " ".join(str(value).split())
    return text or None


def _date(value: object) -> str | None:
    """A front matter's date as ISO 8601: YAML reads a bare date as one already."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return _text(value)
