"""The index shared through a real Redis: `llmgw posts index` publishes the file with its
version, every replica's PostsIndex loads it and follows new versions, an indexer on another
machine starts from the published index, and a Redis that goes away leaves the copy in use."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import redis as redis_py
import redis.asyncio as aioredis
from support import free_port, start_redis, stop_process

from app.posts import PostsIndex, shared

if TYPE_CHECKING:
    from pathlib import Path

    from posts_support import PostsCommand


def replica(client: aioredis.Redis, index_path: Path) -> PostsIndex:
    """A gateway replica's index (its own file path is never read when shared through Redis)."""
    return PostsIndex(share="redis", path=index_path.with_name("unused"), redis=client)


def test_two_replicas_load_the_published_index_and_follow_it(
    posts_command: PostsCommand, blog: Path, redis_url: str, redis_client: redis_py.Redis
) -> None:
    """Both replicas serve the version `llmgw posts index` published; after a post changes and
    the index is published again, both swap to the new version at their next refresh, and
    their private copies go when they close."""
    done = posts_command("index", str(blog), redis_url=redis_url, posts_share="auto")
    assert done.code == 0, done.err
    assert "published to Redis as version" in done.out
    first = shared.published(redis_client, "llmgw")["version"]

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        replicas = [replica(client, blog), replica(client, blog)]
        for index in replicas:
            assert await index.refresh()
            assert index.size().posts == 3
            assert (await index.search("preflight"))[0].heading == "The preflight"
        assert not await replicas[0].refresh()  # same version: not fetched again

        post = blog / "nginx.html"
        post.write_text(post.read_text().replace("CORS preflight", "OPTIONS preflight request"))
        assert posts_command("index", str(blog), redis_url=redis_url).code == 0
        assert shared.published(redis_client, "llmgw")["version"] != first
        for index in replicas:
            assert await index.refresh()
            assert "OPTIONS preflight request" in (await index.search("preflight"))[0].text
        copies = [path for index in replicas for path in index._copies.iterdir()]  # type: ignore[union-attr]  # noqa: SLF001
        assert len(copies) == 2  # one file each: the old version's copies are gone
        for index in replicas:
            await index.aclose()
        assert not any(path.exists() for path in copies)
        await client.aclose()

    asyncio.run(scenario())


def test_an_indexer_elsewhere_starts_from_the_published_index(
    posts_command: PostsCommand, blog: Path, redis_url: str, tmp_path: Path
) -> None:
    """Another machine (another LLMGW_POSTS_INDEX, no file yet) takes the published index
    before it indexes: its run finds the posts unchanged instead of adding them again."""
    assert posts_command("index", str(blog), redis_url=redis_url).code == 0
    elsewhere = str(tmp_path / "other-machine.sqlite3")
    done = posts_command("index", str(blog), redis_url=redis_url, posts_index=elsewhere)
    assert "0 added, 0 changed, 3 unchanged, 0 removed" in done.out, done.err
    listing = posts_command("list", redis_url=redis_url, posts_index=str(tmp_path / "third"))
    assert "Bearer tokens in nginx" in listing.out


def test_remove_is_published_too(
    posts_command: PostsCommand, blog: Path, redis_url: str, redis_client: redis_py.Redis
) -> None:
    """`llmgw posts remove` publishes the index without the post."""
    assert posts_command("index", str(blog), redis_url=redis_url).code == 0
    done = posts_command("remove", "https://blog.example/nginx-bearer/", redis_url=redis_url)
    assert "published to Redis" in done.out, done.err
    assert shared.published(redis_client, "llmgw")["posts"] == "2"


def test_a_redis_that_goes_away_leaves_the_copy_in_use(
    posts_command: PostsCommand, blog: Path, index_path: Path
) -> None:
    """With Redis stopped, a refresh fails quietly and searches go on from the copy loaded."""
    port = free_port()
    server = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        assert posts_command("index", str(blog), redis_url=url).code == 0

        async def scenario() -> None:
            client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
            index = replica(client, index_path)
            assert await index.refresh()
            stop_process(server)
            assert not await index.refresh()
            assert (await index.search("funnel"))[
                0
            ].title == "Serving a model through Tailscale Funnel"
            await index.aclose()
            await client.aclose()

        asyncio.run(scenario())
    finally:
        stop_process(server)


def test_no_published_index_is_an_empty_one(redis_url: str, index_path: Path) -> None:
    """Before anything is published, a replica has no index (RAG stays off), without error."""

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        index = replica(client, index_path)
        assert not await index.refresh()
        assert not index.loaded
        assert await index.search("anything") == []
        await index.aclose()
        await client.aclose()

    asyncio.run(scenario())
