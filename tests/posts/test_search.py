"""`PostsIndex.search`, the gateway's way in: ranked passages with their post's title, URL and
date, capped by count and tokens; words, not query syntax; and the index followed as
`llmgw posts index` replaces its file."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import pytest

from app.chat.tokens import estimate
from app.posts import Passage, PostsIndex

if TYPE_CHECKING:
    from pathlib import Path

    from posts_support import PostsCommand

POSTS = {
    "funnel.md": "# Tailscale Funnel\n\nThe funnel exposes the Mac's port to the internet.\n\n"
    "## Certificates\n\nTailscale provisions the HTTPS certificate for the funnel.\n",
    "limits.md": "# Rate limits\n\nFixed windows limit each visitor; the global window limits "
    "everyone.\n\n## Limiting in Lua\n\nOne script checks every window atomically.\n",
    "breaker.md": "# The breaker\n\nThree failures in a row open the circuit breaker.\n\n"
    "## Half-open\n\nAfter its cooldown a few trial requests go through.\n",
    "long.md": "# A long post\n\n"
    + "\n\n".join(
        f"Paragraph {n} mentions windows and many other words besides." * 6 for n in range(12)
    ),
}


def search(index: PostsIndex, query: str, **caps: int) -> list[Passage]:
    async def run() -> list[Passage]:
        await index.refresh()
        return await index.search(query, **caps)

    return asyncio.run(run())


@pytest.fixture
def built(posts_command: PostsCommand, tmp_path: Path, index_path: Path) -> Path:
    """An index of four small posts; its folder."""
    folder = tmp_path / "posts"
    folder.mkdir()
    for name, text in POSTS.items():
        (folder / name).write_text(text)
    assert posts_command("index", str(folder), posts_passage_tokens="64").code == 0
    return folder


def opened(index_path: Path) -> PostsIndex:
    return PostsIndex(share="file", path=index_path)


def test_the_best_passage_comes_first_with_its_post(built: Path, index_path: Path) -> None:
    """A question about certificates finds that section of the funnel post first, with the
    post's title and URL and the section's heading; scores fall from there."""
    found = search(opened(index_path), "who provides the HTTPS certificates?")
    assert found[0].title == "Tailscale Funnel"
    assert found[0].url == "https://blog.example/funnel/"
    assert found[0].heading == "Certificates"
    assert "provisions the HTTPS certificate" in found[0].text
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)


def test_words_match_by_their_stem(built: Path, index_path: Path) -> None:
    """'limiting' finds 'limits' and 'limit' (Porter stems); 'opened circuits' the breaker."""
    assert search(opened(index_path), "limiting")[0].title == "Rate limits"
    assert search(opened(index_path), "opened circuits")[0].title == "The breaker"


@pytest.mark.parametrize(
    "query",
    ['"tailscale', "funnel*", "NEAR(funnel certificate)", "-funnel", "title:funnel", "funnel AND"],
)
def test_query_syntax_is_only_words(built: Path, index_path: Path, query: str) -> None:
    """FTS5's operators in a query are taken as words (or dropped), never as syntax: no error,
    and the funnel post is found."""
    found = search(opened(index_path), query)
    assert found
    assert found[0].title == "Tailscale Funnel"


def test_nothing_to_look_for_finds_nothing(built: Path, index_path: Path) -> None:
    """Stop words only, punctuation only, or an empty query: no passage."""
    for query in ("what is the", "?!", "   ", ""):
        assert search(opened(index_path), query) == []


def test_count_and_tokens_cap_the_passages(built: Path, index_path: Path) -> None:
    """At most `limit` passages, and together at most `max_tokens` by the chat's estimate."""
    index = opened(index_path)
    assert len(search(index, "windows", limit=3)) == 3
    capped = search(opened(index_path), "windows", limit=20, max_tokens=100)
    assert capped
    assert sum(estimate(len(passage.text)) for passage in capped) <= 100
    assert len(search(opened(index_path), "windows", limit=20, max_tokens=100_000)) > len(capped)


def test_no_index_yet_then_one_appears(
    posts_command: PostsCommand, built: Path, index_path: Path, tmp_path: Path
) -> None:
    """Before the file exists the index is empty (not loaded, size 0, no age); a refresh after
    `llmgw posts index` loads it, and a later run's new file is swapped in."""
    index = PostsIndex(share="file", path=tmp_path / "elsewhere.sqlite3")

    async def scenario() -> None:
        assert not await index.refresh()
        assert not index.loaded
        assert index.size().posts == 0
        assert index.age is None
        assert await index.search("funnel") == []
        await index.aclose()

        live = opened(index_path)
        assert await live.refresh()
        assert live.size().posts == 4
        assert live.age is not None
        assert live.age < 60
        assert not await live.refresh()  # the same file: nothing to do
        (built / "funnel.md").write_text("# Tailscale Funnel\n\nNow about serve mode.\n")
        assert posts_command("index", str(built), posts_passage_tokens="64").code == 0
        assert await live.refresh()
        found = await live.search("serve mode")
        assert found[0].text == "Now about serve mode."
        assert await live.search("certificates") == []
        await live.aclose()

    asyncio.run(scenario())


def test_searches_run_concurrently_with_swaps(built: Path, index_path: Path) -> None:
    """Many searches at once, while new copies of the index are swapped in, all answer: none
    meets a copy closed under it."""

    async def scenario() -> tuple[list[list[Passage]], int]:
        index = opened(index_path)
        await index.refresh()

        async def swaps() -> int:
            count = 0
            for step in range(10):
                os.utime(index_path, ns=(step * 10**9, step * 10**9))  # a new file's identity
                count += await index.refresh()
                await asyncio.sleep(0)
            return count

        queries = ["funnel", "windows", "breaker", "certificate"] * 25
        swapping = asyncio.create_task(swaps())
        results = await asyncio.gather(*(index.search(query) for query in queries))
        swapped = await swapping
        await index.aclose()
        return results, swapped

    results, swapped = asyncio.run(scenario())
    assert swapped == 10
    assert all(results)
