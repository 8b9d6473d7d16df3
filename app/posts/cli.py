"""`llmgw posts index|list|remove|search|eval`: the owner's posts, for the model to read.

The index is the SQLite file LLMGW_POSTS_INDEX. Shared through Redis (LLMGW_POSTS_SHARE=redis,
or auto with LLMGW_REDIS_URL set), each command first takes the published index when it is newer
than the file, and a command that changes it publishes it again: the replicas load it within
LLMGW_POSTS_REFRESH_SECONDS.

Exit codes: 0 done, 1 some posts failed or no such post, 2 misconfigured, misused or a source
or Redis that cannot be reached."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import redis
from redis.exceptions import RedisError

from app.posts import evaluate, shared, store, vectors
from app.posts.folder import folder_posts
from app.posts.index import PostsIndex, embedder_of
from app.posts.indexer import Options, Report, index
from app.posts.web import SourceError, web_posts
from app.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from app.posts.records import Found
    from app.settings import Settings


class Refused(Exception):
    """The command cannot run as asked; the message says why (exit code 2)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of `llmgw posts`."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail(str(exc), 2)
    try:
        with _shared(settings) as client:
            return _run(args, settings, client)
    except Refused as exc:
        return _fail(str(exc), 2)
    except (RedisError, ConnectionError) as exc:  # the URL may carry a password: its kind only
        return _fail(f"cannot reach Redis at LLMGW_REDIS_URL ({type(exc).__name__})", 2)
    except vectors.VectorsUnavailable as exc:
        return _fail(str(exc), 2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmgw posts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("index", help="index a folder, a feed or a sitemap (again)")
    build.add_argument("source", help="a folder of .md/.html files, or a feed's or sitemap's URL")
    build.add_argument("--base-url", help="where a folder's posts are (LLMGW_POSTS_BASE_URL)")
    build.add_argument(
        "--include", action="append", default=[], metavar="PATTERN",
        help="only the URLs whose path matches (shell-style, e.g. '/posts/*'); repeatable",
    )  # fmt: skip
    commands.add_parser("list", help="every post: date, passages, title, URL")
    remove = commands.add_parser("remove", help="take the post at that URL out of the index")
    remove.add_argument("url")
    find = commands.add_parser("search", help="the passages a search finds, as the model gets them")
    find.add_argument("query")
    find.add_argument("--limit", type=_count, default=5)
    find.add_argument("--max-tokens", type=_count, default=1_200)
    measure = commands.add_parser("eval", help="nDCG@10 and recall@5 on a BEIR collection")
    measure.add_argument(
        "folder", type=Path, help="with corpus.jsonl, queries.jsonl, qrels/test.tsv"
    )
    return parser


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 1000000")
    return int(text)


class _shared:  # noqa: N801 - used as a context manager, like a function
    """The Redis client of a shared index (None when the index is only its file)."""

    def __init__(self, settings: Settings) -> None:
        share = settings.posts_share
        if share == "redis" and settings.redis_url is None:
            raise Refused("LLMGW_POSTS_SHARE=redis needs LLMGW_REDIS_URL")
        url = settings.redis_url if share in ("redis", "auto") else None
        self._client = (
            redis.Redis.from_url(
                url.get_secret_value(), socket_connect_timeout=3, socket_timeout=30
            )
            if url is not None
            else None
        )

    def __enter__(self) -> redis.Redis | None:
        return self._client

    def __exit__(self, *_: object) -> None:
        if self._client is not None:
            self._client.close()


def _run(args: argparse.Namespace, settings: Settings, client: redis.Redis | None) -> int:
    if args.command == "eval":
        return _eval(args.folder, settings)
    path = Path(settings.posts_index)
    if client is not None:
        _take_newer(client, settings.key_prefix, path)
    if args.command == "index":
        return _index(args, settings, path, client)
    if args.command == "remove":
        return _remove(args.url, path, settings, client)
    if not path.exists():
        print(f"no index at {path} yet (llmgw posts index SOURCE)")
        return 0
    if args.command == "list":
        return _list(path)
    return asyncio.run(_search(path, settings, args))


def _take_newer(client: redis.Redis, prefix: str, path: Path) -> None:
    """The published index in place of the file, when it was built later."""
    facts = shared.published(client, prefix)
    if not facts:
        return
    local = _indexed_at(path)
    if local is None or float(facts.get("indexed_at", "0")) > local:
        shared.download(client, prefix, path)


def _indexed_at(path: Path) -> float | None:
    if not path.exists():
        return None
    connection = vectors.connect(path, read_only=True)
    try:
        value = store.meta(connection).get("indexed_at")
    finally:
        connection.close()
    return float(value) if value else None


def _index(
    args: argparse.Namespace, settings: Settings, path: Path, client: redis.Redis | None
) -> int:
    options = Options(
        base_url=(args.base_url or settings.posts_base_url or "").rstrip("/") or None,
        selector=settings.posts_content_selector,
        passage_tokens=settings.posts_passage_tokens,
        embedder=embedder_of(settings),
    )
    if options.embedder is not None and not vectors.available():
        raise Refused(
            "LLMGW_POSTS_EMBEDDINGS_URL is set, and dense search needs sqlite-vec:"
            " pip install 'llmgw[posts-dense]' (or unset it for lexical search only)"
        )
    with httpx.Client(headers={"User-Agent": "llmgw-posts"}) as web:
        source, found = _source(args.source, args.include, web, options.base_url)
        report = index(path, source, found, options)
    _print_report(report, path)
    if client is not None:
        _publish(client, settings.key_prefix, path)
    return 1 if report.failed or report.problems else 0


def _source(
    text: str, include: list[str], web: httpx.Client, base_url: str | None
) -> tuple[str, Iterator[Found] | list[Found]]:
    """The source's name in the index, and the posts it lists."""
    if text.startswith(("http://", "https://")):
        try:
            return text, web_posts(web, text, include)
        except SourceError as exc:
            raise Refused(str(exc)) from None
    folder = Path(text)
    if not folder.is_dir():
        raise Refused(f"{text} is not a folder, nor an http(s) URL of a feed or a sitemap")
    if include:
        raise Refused("--include is for a feed's or a sitemap's URLs")
    return str(folder.resolve()), folder_posts(folder, base_url)


def _print_report(report: Report, path: Path) -> None:
    print(
        f"{report.added} added, {report.changed} changed, {report.unchanged} unchanged,"
        f" {report.removed} removed, {report.failed} failed"
        + (f"; {report.embedded} passages embedded" if report.embedded else "")
    )
    for problem in report.problems:
        print(f"llmgw posts: {problem}", file=sys.stderr)
    connection = vectors.connect(path, read_only=True)
    try:
        size = store.size(connection, path)
    finally:
        connection.close()
    print(f"index {path}: {size.posts} posts, {size.passages} passages, {size.bytes} bytes")


def _publish(client: redis.Redis, prefix: str, path: Path) -> None:
    connection = vectors.connect(path, read_only=True)
    try:
        size, indexed_at = store.size(connection, path), store.meta(connection)["indexed_at"]
    finally:
        connection.close()
    version = shared.publish(client, prefix, path, size, indexed_at)
    print(f"published to Redis as version {version}: replicas load it within their refresh")


def _remove(url: str, path: Path, settings: Settings, client: redis.Redis | None) -> int:
    if not path.exists():
        return _fail(f"no post at {url}: there is no index at {path} yet", 1)
    found = False
    with store.rewriting(path, vectors_on=False) as connection:
        found = store.remove(connection, url=url)
    if not found:
        return _fail(f"no post at {url} (llmgw posts list shows their URLs)", 1)
    print(f"removed {url}")
    if client is not None:
        _publish(client, settings.key_prefix, path)
    return 0


def _list(path: Path) -> int:
    connection = vectors.connect(path, read_only=True)
    try:
        posts = store.posts(connection)
    finally:
        connection.close()
    if not posts:
        print("no posts (llmgw posts index SOURCE)")
        return 0
    rows = [("DATE", "PASSAGES", "TITLE", "URL")]
    rows += [((post.date or "-")[:10], str(post.passages), post.title, post.url) for post in posts]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[3]]))
    return 0


async def _search(path: Path, settings: Settings, args: argparse.Namespace) -> int:
    posts = PostsIndex(share="file", path=path, embedder=embedder_of(settings))
    try:
        await posts.refresh()
        found = await posts.search(args.query, limit=args.limit, max_tokens=args.max_tokens)
    finally:
        await posts.aclose()
    if not found:
        print("nothing found")
    for passage in found:
        print(f"{passage.score:.4f}  {passage.title} — {passage.heading}\n        {passage.url}")
        print(f"        {passage.text[:300]}")
    return 0


def _eval(folder: Path, settings: Settings) -> int:
    try:
        collection = evaluate.load(folder)
        results = evaluate.evaluate(
            collection, passage_tokens=settings.posts_passage_tokens, embedder=embedder_of(settings)
        )
    except evaluate.CollectionError as exc:
        raise Refused(str(exc)) from None
    print(
        f"{folder}: {len(collection.documents)} documents, {len(collection.queries)} judged queries"
    )
    labels = list(evaluate.MEASURES.values())
    print(f"{'search':8}  " + "  ".join(f"{label:>8}" for label in labels))
    for name, scores in results.items():
        print(f"{name:8}  " + "  ".join(f"{scores[label]:8.3f}" for label in labels))
    if len(results) == 1:
        print("dense and fused: off (set LLMGW_POSTS_EMBEDDINGS_URL)")
    return 0


def _fail(message: str, code: int) -> int:
    print(f"llmgw posts: {message}", file=sys.stderr)
    return code
