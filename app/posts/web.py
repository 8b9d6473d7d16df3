"""The posts of a blog on the web, fetched with httpx: its RSS or Atom feed (feedparser), or its
sitemap (read with defusedxml: the XML comes from the web; a gzipped one too).

A feed entry with its whole content (content:encoded, Atom's content) is read from the feed;
one with a summary only, from its page. A sitemap lists pages, each fetched and read as HTML;
a sitemap index's sitemaps are followed one level down. Shell-style `include` patterns over a
URL's path (`/posts/*`) keep the posts of a sitemap that lists every page of the site."""

from __future__ import annotations

import fnmatch
import gzip
import zlib
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urljoin, urlsplit

import defusedxml.ElementTree as SafeTree
import feedparser
import httpx
from defusedxml import DefusedXmlException

from app.posts.html_page import iso_date
from app.posts.records import Found, Loaded

if TYPE_CHECKING:
    from collections.abc import Sequence
    from xml.etree.ElementTree import Element

MAX_BYTES = 10_000_000  # one feed, sitemap or page
MAX_POSTS = 20_000
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
SITEMAP_ROOTS = ("urlset", "sitemapindex")


class SourceError(Exception):
    """A source or one of its pages cannot be read; the message says which and why."""


def web_posts(client: httpx.Client, url: str, include: Sequence[str] = ()) -> list[Found]:
    """The posts the feed or sitemap at `url` lists (those its patterns include)."""
    body = fetch(client, url)[0]
    root = _xml_root(body)
    if root is not None and _local(root.tag) in SITEMAP_ROOTS:
        found = _sitemap(client, url, root, include, depth=0)
    else:
        found = _feed(client, url, body, include)
    if len(found) > MAX_POSTS:
        raise SourceError(
            f"{url} lists {len(found)} posts, more than {MAX_POSTS}: narrow it with --include"
        )
    return found


def fetch(client: httpx.Client, url: str) -> tuple[bytes, str]:
    """The body at `url` (at most MAX_BYTES, gunzipped if it is a .gz file) and its charset."""
    try:
        with client.stream("GET", url, follow_redirects=True, timeout=TIMEOUT) as response:
            if response.status_code != 200:
                raise SourceError(f"{url} answered {response.status_code}")
            chunks: list[bytes] = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if sum(map(len, chunks)) > MAX_BYTES:
                    raise SourceError(f"{url} is larger than {MAX_BYTES} bytes")
            charset = response.charset_encoding or "utf-8"
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot fetch {url} ({type(exc).__name__})") from None
    return _gunzipped(b"".join(chunks), url), charset


def _gunzipped(body: bytes, url: str) -> bytes:
    if not body.startswith(b"\x1f\x8b"):
        return body
    try:
        inflated = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, MAX_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile):
        raise SourceError(f"{url} is not a valid gzip file") from None
    if len(inflated) > MAX_BYTES:
        raise SourceError(f"{url} unzips to more than {MAX_BYTES} bytes")
    return inflated


def _xml_root(body: bytes) -> Element | None:
    """The document's root element, or None when it is no XML defusedxml accepts (feedparser
    reads what it can of a feed that is not well-formed)."""
    try:
        return cast("Element", SafeTree.fromstring(body.lstrip()))
    except (SafeTree.ParseError, DefusedXmlException, ValueError):
        return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _included(url: str, include: Sequence[str]) -> bool:
    path = urlsplit(url).path or "/"
    return not include or any(fnmatch.fnmatchcase(path, pattern) for pattern in include)


def _sitemap(
    client: httpx.Client, url: str, root: Element, include: Sequence[str], *, depth: int
) -> list[Found]:
    found: list[Found] = []
    for entry in root:
        loc = _child_text(entry, "loc")
        if not loc:
            continue
        loc = urljoin(url, loc)
        if _local(root.tag) == "sitemapindex":
            if depth == 0:
                found += _nested_sitemap(client, loc, include)
        elif _included(loc, include):
            lastmod = _child_text(entry, "lastmod") or ""
            found.append(Found(loc, partial(_page, client, loc, None, lastmod), stamp=lastmod))
    return found


def _nested_sitemap(client: httpx.Client, url: str, include: Sequence[str]) -> list[Found]:
    root = _xml_root(fetch(client, url)[0])
    if root is None or _local(root.tag) not in SITEMAP_ROOTS:
        raise SourceError(f"{url}, listed in the sitemap index, is not a sitemap")
    return _sitemap(client, url, root, include, depth=1)


def _child_text(element: Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name and child.text:
            return child.text.strip()
    return None


def _page(client: httpx.Client, url: str, title: str | None, date: str | None) -> Loaded:
    body, charset = fetch(client, url)
    text = body.decode(charset if _known_codec(charset) else "utf-8", errors="replace")
    return Loaded(text, "html", url=url, title=title, date=iso_date(date))


def _known_codec(name: str) -> bool:
    try:
        "".encode(name)
    except LookupError:
        return False
    return True


def _feed(client: httpx.Client, url: str, body: bytes, include: Sequence[str]) -> list[Found]:
    feed = feedparser.parse(body)
    if not feed.entries:
        raise SourceError(f"{url} is neither a feed with entries nor a sitemap")
    found: list[Found] = []
    for entry in feed.entries:
        link = urljoin(url, entry.get("link") or "")
        if not entry.get("link") or not _included(link, include):
            continue
        title, date = entry.get("title"), _entry_date(entry)
        content = _whole_content(entry)
        if content is not None:
            found.append(Found(link, partial(Loaded, content, "html", link, title, date)))
        else:  # a summary only: the page has the post
            stamp = _field(entry, "updated") or _field(entry, "published") or ""
            found.append(Found(link, partial(_page, client, link, title, date), stamp=stamp))
    return found


def _whole_content(entry: Any) -> str | None:
    for content in entry.get("content") or ():
        if content.get("value", "").strip():
            return str(content["value"])
    return None


def _field(entry: Any, name: str) -> Any:
    """An entry's own field: feedparser's `get` maps a missing `updated` to `published`."""
    return dict.get(entry, name)


def _entry_date(entry: Any) -> str | None:
    parsed = _field(entry, "published_parsed") or _field(entry, "updated_parsed")
    if not parsed:
        return None
    return f"{parsed.tm_year:04d}-{parsed.tm_mon:02d}-{parsed.tm_mday:02d}"
