"""The lexical index (app/posts/lexical.py): BM25 kept in the index's file, ranking as FTS5's
bm25 did, in step with the posts as `llmgw posts index` and `remove` change them, the same for
a replica that loads the file from Redis, and built at load for a file an older llmgw wrote."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from app.posts import PostsIndex, evaluate, lexical, search, store

if TYPE_CHECKING:
    from posts_support import PostsCommand

    from app.posts import Passage

POSTS = {
    "funnel.md": "# Tailscale Funnel\n\nThe funnel exposes a port of the Mac to the internet.\n\n"
    "## Certificates\n\nTailscale provisions the HTTPS certificate for the funnel.\n",
    "limits.md": "# Rate limits\n\nFixed windows limit each visitor, and a global window limits "
    "everyone.\n\n## Limiting in Lua\n\nOne script checks every window atomically.\n",
    "breaker.md": "# The breaker\n\nThree failures in a row open the circuit breaker.\n\n"
    "## Half-open\n\nAfter its cooldown a few trial requests go through.\n",
    "energy.md": "# Energy per answer\n\nThe probe reads the GPU's power; each answer is given "
    "its part of the joules.\n",
    "nginx.md": "# Bearer tokens in nginx\n\nThe auth_request module asks the gateway whether a "
    "token is good.\n",
}
COLLECTION = Path(__file__).parent / "collection"


@pytest.fixture
def folder(posts_command: PostsCommand, tmp_path: Path) -> Path:
    """A folder of five posts on five subjects, indexed; the folder."""
    folder = tmp_path / "posts"
    folder.mkdir()
    for name, text in POSTS.items():
        (folder / name).write_text(text)
    assert posts_command("index", str(folder)).code == 0
    return folder


def searched(index: PostsIndex, *queries: str) -> list[list[Passage]]:
    async def run() -> list[list[Passage]]:
        await index.refresh()
        found = [await index.search(query, limit=10) for query in queries]
        await index.aclose()
        return found

    return asyncio.run(run())


def titles(index_path: Path, query: str) -> list[str]:
    (found,) = searched(PostsIndex(share="file", path=index_path), query)
    return [passage.title for passage in found]


def kept(index_path: Path) -> lexical.LexicalIndex | None:
    """The lexical index kept in the file, None when it has none for the file as it is."""
    connection = sqlite3.connect(index_path)
    try:
        return lexical.load(connection, store.meta(connection)["indexed_at"])
    finally:
        connection.close()


def test_the_post_about_the_subject_comes_first(folder: Path, index_path: Path) -> None:
    """Each question finds the post about its subject first, by its stems ('provisioned
    certificates', 'limiting'), from the lexical index kept in the file."""
    assert kept(index_path) is not None
    assert titles(index_path, "who provisioned the certificates?")[0] == "Tailscale Funnel"
    assert titles(index_path, "limiting visitors")[0] == "Rate limits"
    assert titles(index_path, "when does the circuit open")[0] == "The breaker"
    assert titles(index_path, "joules per answer")[0] == "Energy per answer"
    assert titles(index_path, "nginx auth_request")[0] == "Bearer tokens in nginx"
    assert titles(index_path, "kubernetes operators") == []


def test_a_changed_post_and_a_removed_one_are_searched_as_they_are_now(
    posts_command: PostsCommand, folder: Path, index_path: Path
) -> None:
    """After a post changes, its new words find it and its old ones no longer do; after a post
    is removed from the folder, or with `llmgw posts remove`, nothing finds it."""
    (folder / "funnel.md").write_text("# Tailscale Funnel\n\nNow about serve mode.\n")
    (folder / "energy.md").unlink()
    assert posts_command("index", str(folder)).code == 0
    assert kept(index_path) is not None
    assert titles(index_path, "serve mode") == ["Tailscale Funnel"]
    assert titles(index_path, "certificates") == []
    assert titles(index_path, "joules") == []
    done = posts_command("remove", "https://blog.example/nginx/")
    assert done.code == 0, done.err
    assert titles(index_path, "bearer tokens nginx") == []
    assert titles(index_path, "limiting")[0] == "Rate limits"


def test_a_replica_loading_from_redis_searches_the_same(
    posts_command: PostsCommand, folder: Path, index_path: Path, redis_url: str
) -> None:
    """A replica that loads the published file from Redis ranks as one that reads the file."""
    done = posts_command("index", str(folder), redis_url=redis_url, posts_share="auto")
    assert done.code == 0, done.err
    queries = ("tailscale certificate", "window limits", "trial requests", "token")

    async def from_redis() -> list[list[Passage]]:
        client = aioredis.Redis.from_url(redis_url)
        index = PostsIndex(share="redis", path=index_path.with_name("unused"), redis=client)
        await index.refresh()
        found = [await index.search(query, limit=10) for query in queries]
        await index.aclose()
        await client.aclose()
        return found

    from_file = searched(PostsIndex(share="file", path=index_path), *queries)
    assert all(from_file)
    assert asyncio.run(from_redis()) == from_file


@pytest.mark.parametrize("older", ["no table", "another version's table"])
def test_a_file_an_older_llmgw_wrote_is_searched_all_the_same(
    folder: Path, index_path: Path, caplog: pytest.LogCaptureFixture, older: str
) -> None:
    """A file with no lexical index, or one an older llmgw rewrote since (kept for another
    indexed_at), is searched as the file's passages are, from an index built at load, with a
    warning that says how to keep one in the file."""
    before = titles(index_path, "who provisioned the certificates?")
    with sqlite3.connect(index_path) as connection:
        if older == "no table":
            connection.execute("DROP TABLE lexical_index")
        else:
            store.set_meta(connection, indexed_at="1.000")
    assert kept(index_path) is None
    with caplog.at_level(logging.WARNING, logger="llmgw.posts"):
        assert titles(index_path, "who provisioned the certificates?") == before
    assert "run `llmgw posts index` again" in caplog.text


def test_a_word_in_most_passages_still_finds_them(
    posts_command: PostsCommand, tmp_path: Path, index_path: Path
) -> None:
    """In a blog of one post every word is in half its passages or more, so BM25 gives none a
    weight: the passages that hold the words still come, the one saying them most first."""
    one = tmp_path / "one"
    one.mkdir()
    (one / "funnel.md").write_text(
        "# Tailscale Funnel\n\nThe funnel, the funnel, the funnel.\n\n"
        "## Serve\n\nServe mode, not the funnel.\n"
    )
    assert posts_command("index", str(one)).code == 0
    (found,) = searched(PostsIndex(share="file", path=index_path), "funnel")
    assert [passage.heading for passage in found] == ["Tailscale Funnel", "Serve"]


def test_the_ranking_is_fts5_bm25s_on_the_shipped_collection(tmp_path: Path) -> None:
    """For every question of the shipped collection, the lexical index's first ten passages
    are those FTS5's bm25 ranked first over the same passages, less the words in half of them
    or more, as search.lexical asked it (the scoring they share: Porter stems, k1 1.2, b 0.75,
    Robertson's IDF)."""
    collection = evaluate.load(COLLECTION)
    path = tmp_path / "eval.sqlite3"
    evaluate._build(path, collection, 256, None)  # noqa: SLF001 - the collection's index
    connection = sqlite3.connect(path)
    index = lexical.build(connection)
    differ = [
        text
        for text in collection.queries.values()
        if [rowid for rowid, _ in index.ranked(search.query_words(text), 10)]
        != fts5_ranked(connection, search.query_words(text))
    ]
    connection.close()
    assert differ == []


def fts5_ranked(connection: sqlite3.Connection, words: list[str]) -> list[int]:
    """The ten passages FTS5's bm25 ranks first for the words in under half the passages."""
    (passages,) = connection.execute("SELECT count(*) FROM passages").fetchone()
    weighty = [
        word
        for word in words
        if 2
        * connection.execute(
            "SELECT count(*) FROM passages_fts WHERE passages_fts MATCH ?", (f'"{word}"',)
        ).fetchone()[0]
        < passages
    ]
    rows = connection.execute(
        "SELECT rowid FROM passages_fts WHERE passages_fts MATCH ? ORDER BY bm25(passages_fts)"
        " LIMIT 10",
        (search.match_expression(weighty),),
    ).fetchall()
    return [rowid for (rowid,) in rows]
