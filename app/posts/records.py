"""What the posts' index reads, holds and hands out: posts found and loaded, their blocks,
passages found by a search, a post's summary, the index's size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable


class Block(msgspec.Struct, frozen=True):
    """One heading (level 1 to 6) or one paragraph-like block (level 0) of a post, as text."""

    text: str
    level: int = 0


class Page(msgspec.Struct, frozen=True):
    """A post as read from its file or page: its blocks, and what it says about itself (a
    draft is not indexed)."""

    blocks: list[Block]
    title: str | None = None
    url: str | None = None
    date: str | None = None
    draft: bool = False


class PostError(Exception):
    """A post cannot be read; the message says why (the indexer names the post)."""


class Passage(msgspec.Struct, frozen=True):
    """A passage found by a search: its post's title, URL and date (ISO 8601, or None), the
    heading it sits under, its text, and its score (higher is better; lexical scores are
    bm25's, fused ones reciprocal rank fusion's, so compare scores of one search only)."""

    title: str
    url: str
    date: str | None
    heading: str
    text: str
    score: float


class PostInfo(msgspec.Struct, frozen=True):
    """One post of the index, as `llmgw posts list` shows it."""

    url: str
    title: str
    date: str | None
    passages: int
    source: str


class IndexSize(msgspec.Struct, frozen=True):
    """How big the index is: posts, passages, bytes of its file."""

    posts: int
    passages: int
    bytes: int


class Loaded(msgspec.Struct, frozen=True):
    """A post's content as its source gave it (Markdown or HTML), with what the source itself
    says of the post, used where the content says nothing: its URL, title and date."""

    content: str
    kind: str  # "markdown" or "html"
    url: str | None = None
    title: str | None = None
    date: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """A post a source lists: its key there (a file's path, a page's URL), a stamp that changes
    when it does where the source has one (a sitemap's lastmod; "" when none), and how to read
    it (a file read, a page fetched: only when the stamp does not say it is unchanged)."""

    key: str
    load: Callable[[], Loaded]
    stamp: str = ""
