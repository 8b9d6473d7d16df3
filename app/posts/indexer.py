"""One run of `llmgw posts index` over a source: each post it lists is compared with the index
by its content hash, and only a new or changed one is read, cut and stored again; posts the
source no longer lists are removed. With dense search, the passages that have no vector yet get
one (all of them when the embedding model changed). The run changes a copy of the index, put in
place only when the run ends (store.rewriting)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec

from app.posts import store, vectors
from app.posts.html_page import read_html
from app.posts.markdown_page import read_markdown
from app.posts.passages import Piece, cut
from app.posts.records import PostError
from app.posts.web import SourceError

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable
    from pathlib import Path

    from app.posts.records import Found, Loaded
    from app.posts.vectors import Embedder

# Bumped when reading or cutting changes, so that every post is read again.
READER_VERSION = "1"
ALL_PASSAGES = (
    "SELECT passages.id, posts.title, passages.heading, passages.text"
    " FROM passages JOIN posts ON posts.id = passages.post"
)
UNVECTORED = (
    "SELECT passages.id, posts.title, passages.heading, passages.text"
    " FROM passages JOIN posts ON posts.id = passages.post"
    " WHERE passages.id NOT IN (SELECT rowid FROM passage_vectors)"
)


@dataclass(frozen=True, slots=True)
class Options:
    """How posts are read: their base URL, the HTML body's selector, the passages' size, and
    where their vectors come from (None: lexical search only)."""

    base_url: str | None = None
    selector: str | None = None
    passage_tokens: int = 256
    embedder: Embedder | None = None


@dataclass(slots=True)
class Report:
    """What a run did, post by post, and what went wrong (a failed post stays as it was)."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    embedded: int = 0
    problems: list[str] = field(default_factory=list)


class Post(msgspec.Struct, frozen=True):
    """A post read and cut, ready to store."""

    url: str
    title: str
    date: str | None
    pieces: list[Piece]


def index(path: Path, source: str, found: Iterable[Found], options: Options) -> Report:
    """Bring the index at `path` up to date with the posts a source lists."""
    report = Report()
    with store.rewriting(path, vectors_on=options.embedder is not None) as connection:
        before = store.known(connection, source)
        seen: set[str] = set()
        for item in found:
            seen.add(item.key)
            _update(connection, source, item, before.get(item.key), options=options, report=report)
        for key in before.keys() - seen:
            store.remove(connection, key=(source, key))
            report.removed += 1
        add_vectors(connection, options.embedder, report)
    return report


def _update(
    connection: sqlite3.Connection,
    source: str,
    item: Found,
    old: store.Known | None,
    *,
    options: Options,
    report: Report,
) -> None:
    if old is not None and item.stamp and old[1] == item.stamp:
        report.unchanged += 1
        return
    try:
        loaded = item.load()
        digest = _digest(loaded, options)
        if old is not None and old[0] == digest:
            store.restamp(connection, source, item.key, item.stamp)
            report.unchanged += 1
            return
        post = read(loaded, options)
    except (SourceError, PostError, OSError) as exc:
        report.failed += 1
        report.problems.append(f"{item.key}: {exc}")
        return
    if post is None:  # a draft: not for visitors
        if old is not None and store.remove(connection, key=(source, item.key)):
            report.removed += 1
        return
    store.put(
        connection,
        source=source,
        key=item.key,
        url=post.url,
        title=post.title,
        date=post.date,
        digest=digest,
        stamp=item.stamp,
        pieces=post.pieces,
    )
    if old is None:
        report.added += 1
    else:
        report.changed += 1


def _digest(loaded: Loaded, options: Options) -> str:
    """The content hash: the post as its source gave it, and how it is read and cut."""
    how = (READER_VERSION, options.passage_tokens, options.selector, options.base_url, loaded)
    return hashlib.sha256(msgspec.json.encode(how)).hexdigest()


def read(loaded: Loaded, options: Options) -> Post | None:
    """A post read and cut into passages (None for a draft)."""
    if loaded.kind == "markdown":
        page = read_markdown(loaded.content)
    else:
        page = read_html(loaded.content, selector=options.selector)
    if page.draft:
        return None
    url = _url(page.url, loaded.url, options.base_url)
    first_heading = next((block.text for block in page.blocks if block.level), None)
    title = loaded.title or page.title or first_heading
    if not title:
        raise PostError("it has no title: no front matter title, no heading")
    pieces = cut(page.blocks, max_tokens=options.passage_tokens, heading=title)
    if not pieces:
        raise PostError("it has no text")
    return Post(url, " ".join(title.split()), page.date or loaded.date, pieces)


def _url(own: str | None, given: str | None, base: str | None) -> str:
    """The post's URL: its own (made absolute against where it was found, or the base URL),
    else the one its source gives."""
    if own and urlsplit(own).scheme in ("http", "https"):
        return own
    if own and (given or base):
        return urljoin(given or f"{base}/", own)
    if given:
        return given
    raise PostError(
        "it has no URL: give it `url:` in its front matter, or set the base URL"
        " (LLMGW_POSTS_BASE_URL or --base-url)"
    )


def add_vectors(connection: sqlite3.Connection, embedder: Embedder | None, report: Report) -> None:
    """Give every passage a vector of the configured model; none when dense search is off."""
    facts = store.meta(connection)
    stale = embedder is None or (
        facts.get("embeddings_model"),
        facts.get("document_prefix"),
    ) != (embedder.model, embedder.document_prefix)
    if store.has_vectors(connection) and stale:
        connection.execute("DROP TABLE passage_vectors")
    if embedder is None:
        store.set_meta(
            connection,
            embeddings_model=None,
            dimensions=None,
            query_prefix=None,
            document_prefix=None,
        )
        return
    missing = _without_vectors(connection)
    if not missing:
        return
    try:
        with httpx.Client() as client:
            made = embedder.documents(client, [text for _, text in missing])
    except (httpx.HTTPError, vectors.EmbeddingsFailed) as exc:
        report.problems.append(
            f"embeddings: {type(exc).__name__ if isinstance(exc, httpx.HTTPError) else exc};"
            f" {len(missing)} passages have no vector yet (index again to add them)"
        )
        return
    dimensions = len(made[0])
    if store.has_vectors(connection) and facts.get("dimensions") != str(dimensions):
        connection.execute("DROP TABLE passage_vectors")  # another model's size: all again
        add_vectors(connection, embedder, report)
        return
    vectors.create_table(connection, dimensions)
    connection.executemany(
        "INSERT INTO passage_vectors (rowid, embedding) VALUES (?, ?)",
        [(rowid, vectors.packed(vector)) for (rowid, _), vector in zip(missing, made, strict=True)],
    )
    store.set_meta(
        connection,
        embeddings_model=embedder.model,
        dimensions=str(dimensions),
        query_prefix=embedder.query_prefix,
        document_prefix=embedder.document_prefix,
    )
    report.embedded += len(missing)


def _without_vectors(connection: sqlite3.Connection) -> list[tuple[int, str]]:
    """Passages with no vector yet: (id, the text embedded: title, heading and passage)."""
    rows = connection.execute(
        UNVECTORED if store.has_vectors(connection) else ALL_PASSAGES
    ).fetchall()
    return [
        (int(rowid), "\n".join(dict.fromkeys((title, heading, text))))
        for rowid, title, heading, text in rows
    ]
